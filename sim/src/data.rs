//! The simulated data: iModels with their export connections and runs, seeded the same way at
//! every start, and the changes the write routes make to them.
//!
//! Connection ids are `conn-{n}-{iModel tag}`, not GUIDs, because real ids are opaque too.

/// GETs of a run after which it reports `Completed`.
const GETS_TO_COMPLETE: u32 = 2;

/// Runs seeded on each iModel's first connection: more than a runs page holds.
const FIRST_CONNECTION_RUNS: usize = 55;

/// The iModels and everything under them.
#[derive(Debug)]
pub(crate) struct Store {
    imodels: Vec<IModel>,
    next_run: u64,
}

#[derive(Debug)]
struct IModel {
    id: String,
    itwin_id: String,
    tag: String,
    next_n: usize,
    connections: Vec<Connection>,
}

/// One export connection.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) id: String,
    pub(crate) imodel_id: String,
    pub(crate) itwin_id: String,
    pub(crate) display_name: String,
    pub(crate) authentication_type: String,
    pub(crate) runs: Vec<Run>,
}

/// One run of a connection.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) id: String,
    gets: u32,
}

impl Run {
    /// A run is `Queued` until its second GET, then `Completed`.
    pub(crate) fn completed(&self) -> bool {
        self.gets >= GETS_TO_COMPLETE
    }
}

/// What deleting a connection did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Removal {
    Removed,
    NotFound,
    InUse,
}

/// What asking for a new run did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RunStart {
    Started(String),
    AlreadyActive(String),
}

impl Store {
    /// Seeds each iModel (duplicates ignored) with its count of connections.
    pub(crate) fn seed(imodels: &[(String, usize)]) -> Self {
        let mut store = Store {
            imodels: Vec::new(),
            next_run: 0,
        };
        for (id, count) in imodels {
            if store.imodels.iter().any(|m| &m.id == id) {
                continue;
            }
            let mut tag: String = id.chars().take(8).collect();
            if store.imodels.iter().any(|m| m.tag == tag) {
                tag = format!("{tag}{}", store.imodels.len());
            }
            let mut imodel = IModel {
                id: id.clone(),
                itwin_id: format!("itwin-{tag}"),
                tag,
                next_n: 1,
                connections: Vec::new(),
            };
            for n in 1..=*count {
                let display_name = match n {
                    2 => "Connection 2 – Ünïcode ✓ \"quoted\"".to_owned(),
                    n => format!("Connection {n}"),
                };
                let kind = if n % 3 == 0 { "Service" } else { "User" };
                let runs = match n {
                    1 => FIRST_CONNECTION_RUNS,
                    n if n % 4 == 1 => 1,
                    _ => 0,
                };
                let runs = (0..runs)
                    .map(|_| {
                        store.next_run += 1;
                        let id = format!("run-{}", store.next_run);
                        let gets = GETS_TO_COMPLETE;
                        Run { id, gets }
                    })
                    .collect();
                imodel.add(display_name, kind, runs);
            }
            store.imodels.push(imodel);
        }
        store
    }

    /// The connections of an iModel, in their stable order; `None` for an unknown iModel.
    pub(crate) fn connections(&self, imodel_id: &str) -> Option<&[Connection]> {
        let imodel = self.imodels.iter().find(|m| m.id == imodel_id)?;
        Some(&imodel.connections)
    }

    /// Appends a connection to an iModel; `None` for an unknown iModel.
    pub(crate) fn create(
        &mut self,
        imodel_id: &str,
        display_name: &str,
        kind: &str,
    ) -> Option<&Connection> {
        let imodel = self.imodels.iter_mut().find(|m| m.id == imodel_id)?;
        imodel.add(display_name.to_owned(), kind, Vec::new());
        imodel.connections.last()
    }

    /// A connection by id.
    pub(crate) fn connection(&self, id: &str) -> Option<&Connection> {
        self.imodels
            .iter()
            .flat_map(|m| &m.connections)
            .find(|c| c.id == id)
    }

    /// Deletes a connection unless a run of it is still active.
    pub(crate) fn delete(&mut self, id: &str) -> Removal {
        for imodel in &mut self.imodels {
            if let Some(index) = imodel.connections.iter().position(|c| c.id == id) {
                let active = imodel
                    .connections
                    .get(index)
                    .and_then(|c| c.runs.last())
                    .is_some_and(|run| !run.completed());
                if active {
                    return Removal::InUse;
                }
                imodel.connections.remove(index);
                return Removal::Removed;
            }
        }
        Removal::NotFound
    }

    /// Starts a run unless the connection's latest one is not completed; `None` for an
    /// unknown connection.
    pub(crate) fn start_run(&mut self, id: &str) -> Option<RunStart> {
        let next_run = self.next_run + 1;
        let connection = self.connection_mut(id)?;
        if let Some(run) = connection.runs.last().filter(|run| !run.completed()) {
            return Some(RunStart::AlreadyActive(run.id.clone()));
        }
        let id = format!("run-{next_run}");
        connection.runs.push(Run {
            id: id.clone(),
            gets: 0,
        });
        self.next_run = next_run;
        Some(RunStart::Started(id))
    }

    /// A run, counting this GET towards its completion.
    pub(crate) fn get_run(&mut self, connection_id: &str, run_id: &str) -> Option<&Run> {
        let connection = self.connection_mut(connection_id)?;
        let run = connection.runs.iter_mut().find(|r| r.id == run_id)?;
        run.gets = run.gets.saturating_add(1);
        Some(run)
    }

    fn connection_mut(&mut self, id: &str) -> Option<&mut Connection> {
        self.imodels
            .iter_mut()
            .flat_map(|m| &mut m.connections)
            .find(|c| c.id == id)
    }
}

impl IModel {
    fn add(&mut self, display_name: String, kind: &str, runs: Vec<Run>) {
        let id = format!("conn-{}-{}", self.next_n, self.tag);
        self.next_n += 1;
        self.connections.push(Connection {
            id,
            imodel_id: self.id.clone(),
            itwin_id: self.itwin_id.clone(),
            display_name,
            authentication_type: kind.to_owned(),
            runs,
        });
    }
}
