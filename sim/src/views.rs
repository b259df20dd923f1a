//! The JSON shapes of the Export API, with keys in the documented order (not sorted), and the
//! absolute hrefs they carry.

use serde::Serialize;

use super::data::{Connection, Run};

/// Runs shown in one page of a connection's runs list.
pub(crate) const RUNS_PAGE: usize = 50;

/// `{"href": ..}`.
#[derive(Debug, Serialize)]
pub(crate) struct Href {
    href: String,
}

impl Href {
    fn new(href: String) -> Self {
        Self { href }
    }
}

/// One connection as the API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConnectionView<'a> {
    id: &'a str,
    #[serde(rename = "iModelId")]
    imodel_id: &'a str,
    #[serde(rename = "iTwinId")]
    itwin_id: &'a str,
    display_name: &'a str,
    authentication_type: &'a str,
    #[serde(rename = "_links")]
    links: ConnectionLinks,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ConnectionLinks {
    #[serde(rename = "iModel")]
    imodel: Href,
    #[serde(rename = "iTwin")]
    itwin: Href,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_run: Option<Href>,
}

impl<'a> ConnectionView<'a> {
    /// Shows `c` with hrefs at `origin`.
    pub(crate) fn of(c: &'a Connection, origin: &str) -> Self {
        let last_run = c.runs.last().map(|run| run_href(origin, &c.id, &run.id));
        Self {
            id: &c.id,
            imodel_id: &c.imodel_id,
            itwin_id: &c.itwin_id,
            display_name: &c.display_name,
            authentication_type: &c.authentication_type,
            links: ConnectionLinks {
                imodel: Href::new(format!("{origin}/imodels/{}", c.imodel_id)),
                itwin: Href::new(format!("{origin}/itwins/{}", c.itwin_id)),
                last_run: last_run.map(Href::new),
            },
        }
    }
}

/// `{"connection": ..}`.
#[derive(Debug, Serialize)]
pub(crate) struct OneConnection<'a> {
    pub(crate) connection: ConnectionView<'a>,
}

/// A page of the connections list.
#[derive(Debug, Serialize)]
pub(crate) struct ConnectionsPage<'a> {
    connections: Vec<ConnectionView<'a>>,
    #[serde(rename = "_links")]
    links: PageLinks,
}

#[derive(Debug, Serialize)]
struct PageLinks {
    #[serde(rename = "self")]
    this: Href,
    #[serde(skip_serializing_if = "Option::is_none")]
    prev: Option<Href>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<Href>,
}

impl<'a> ConnectionsPage<'a> {
    /// The page of `all` that `skip` and then `top` select, linked to its neighbours.
    pub(crate) fn of(
        all: &'a [Connection],
        origin: &str,
        imodel_id: &str,
        skip: usize,
        top: usize,
    ) -> Self {
        let href = |skip: usize| {
            let query = format!("imodelId={imodel_id}&$skip={skip}&$top={top}");
            Href::new(format!("{origin}/export/connections?{query}"))
        };
        let end = skip.saturating_add(top);
        Self {
            connections: all
                .iter()
                .skip(skip)
                .take(top)
                .map(|c| ConnectionView::of(c, origin))
                .collect(),
            links: PageLinks {
                this: href(skip),
                prev: (skip > 0).then(|| href(skip.saturating_sub(top))),
                next: (end < all.len()).then(|| href(end)),
            },
        }
    }
}

/// One run as the API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RunView<'a> {
    id: &'a str,
    connection_id: &'a str,
    export_type: &'static str,
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'static str>,
}

impl<'a> RunView<'a> {
    /// Shows `run` of the connection `connection_id`.
    pub(crate) fn of(run: &'a Run, connection_id: &'a str) -> Self {
        let completed = run.completed();
        Self {
            id: &run.id,
            connection_id,
            export_type: "IFC",
            state: if completed { "Completed" } else { "Queued" },
            result: completed.then_some("Success"),
        }
    }
}

/// `{"run": ..}`.
#[derive(Debug, Serialize)]
pub(crate) struct OneRun<'a> {
    pub(crate) run: RunView<'a>,
}

/// The first page of a connection's runs; its `next` is malformed as in Bentley's docs.
#[derive(Debug, Serialize)]
pub(crate) struct RunsPage<'a> {
    runs: Vec<RunView<'a>>,
    #[serde(rename = "_links")]
    links: RunsLinks,
}

#[derive(Debug, Serialize)]
struct RunsLinks {
    #[serde(rename = "self")]
    this: Href,
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<Href>,
}

impl<'a> RunsPage<'a> {
    /// The first [`RUNS_PAGE`] runs of `c`.
    pub(crate) fn of(c: &'a Connection, origin: &str) -> Self {
        let runs_href = format!("{origin}/export/connections/{}/runs", c.id);
        let more = c.runs.len() > RUNS_PAGE;
        Self {
            runs: c
                .runs
                .iter()
                .take(RUNS_PAGE)
                .map(|r| RunView::of(r, &c.id))
                .collect(),
            links: RunsLinks {
                next: more
                    .then(|| Href::new(format!("{runs_href}&$skip={RUNS_PAGE}&$top={RUNS_PAGE}"))),
                this: Href::new(runs_href),
            },
        }
    }
}

/// The absolute href of a run, also its `Location`.
pub(crate) fn run_href(origin: &str, connection_id: &str, run_id: &str) -> String {
    format!("{origin}/export/connections/{connection_id}/runs/{run_id}")
}
