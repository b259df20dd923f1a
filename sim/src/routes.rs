//! The Export API routes: which operation a request names, and the answer of each operation
//! for an authenticated caller, with the documented status codes and error bodies.

use bytes::Bytes;
use http::header::LOCATION;
use http::request::Parts;
use http::{HeaderValue, Method, Response, StatusCode};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::json;

use super::aids::Aid;
use super::auth::Caller;
use super::data::{Removal, RunStart, Store};
use super::reply::{self, Body, Detail, Query, require};
use super::views::{
    self, ConnectionView, ConnectionsPage, OneConnection, OneRun, RunView, RunsPage,
};
use super::{Shared, lock};

/// The largest `$top` the platform allows, also its default page size.
const MAX_TOP: usize = 1_000;

/// The operation a request names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    ListConnections,
    CreateConnection,
    GetConnection(String),
    DeleteConnection(String),
    StartRun(String),
    ListRuns(String),
    GetRun(String, String),
    AuthorizationInformation,
    Aid(Aid),
    NotFound,
}

impl Route {
    /// Reads the operation from the method and path (ids are taken verbatim).
    pub(crate) fn parse(method: &Method, path: &str) -> Self {
        if let Some(rest) = path.strip_prefix("/sim/") {
            return Route::Aid(Aid::parse(method, rest));
        }
        let read = matches!(*method, Method::GET | Method::HEAD);
        // Served at the root as well as under /export: clients use both spellings.
        if read && path == "/authorizationinformation" {
            return Route::AuthorizationInformation;
        }
        let Some(rest) = path.strip_prefix("/export/") else {
            return Route::NotFound;
        };
        let segments: Vec<&str> = rest.split('/').collect();
        let id = |s: &str| s.to_owned();
        match (segments.as_slice(), read, method) {
            (["connections"], true, _) => Route::ListConnections,
            (["connections"], _, &Method::POST) => Route::CreateConnection,
            (["connections", c], true, _) => Route::GetConnection(id(c)),
            (["connections", c], _, &Method::DELETE) => Route::DeleteConnection(id(c)),
            (["connections", c, "runs"], true, _) => Route::ListRuns(id(c)),
            (["connections", c, "runs"], _, &Method::POST) => Route::StartRun(id(c)),
            (["connections", c, "runs", r], true, _) => Route::GetRun(id(c), id(r)),
            (["authorizationinformation"], true, _) => Route::AuthorizationInformation,
            _ => Route::NotFound,
        }
    }

    /// The connection a route is about.
    fn connection_id(&self) -> Option<&str> {
        match self {
            Route::GetConnection(id)
            | Route::DeleteConnection(id)
            | Route::StartRun(id)
            | Route::ListRuns(id)
            | Route::GetRun(id, _) => Some(id),
            _ => None,
        }
    }

    /// The operation's name, as the rate-limit headers report it.
    pub(crate) fn operation(&self) -> &'static str {
        match self {
            Route::ListConnections => "get-export-connections",
            Route::CreateConnection => "create-export-connection",
            Route::GetConnection(_) => "get-export-connection",
            Route::DeleteConnection(_) => "delete-export-connection",
            Route::StartRun(_) => "run-export-connection",
            Route::ListRuns(_) => "get-export-connection-runs",
            Route::GetRun(..) => "get-export-connection-run",
            Route::AuthorizationInformation => "get-authorization-information",
            Route::Aid(_) | Route::NotFound => "unknown",
        }
    }
}

/// Answers an Export API operation for an authenticated caller.
pub(crate) fn answer(
    shared: &Shared,
    route: Route,
    caller: &Caller,
    parts: &Parts,
    body: &Bytes,
) -> Response<Body> {
    let query = Query::parse(parts.uri.query());
    let origin = shared.origin.as_str();
    if let Some(refused) = route
        .connection_id()
        .and_then(|id| refusal(shared, caller, id))
    {
        return refused;
    }
    let store = || lock(&shared.store);
    match route {
        Route::ListConnections => list_connections(shared, caller, &query),
        Route::CreateConnection => create_connection(shared, caller, body),
        Route::GetConnection(id) => match store().connection(&id) {
            Some(c) => {
                let connection = ConnectionView::of(c, origin);
                reply::json(StatusCode::OK, &OneConnection { connection })
            }
            None => connection_not_found(),
        },
        Route::DeleteConnection(id) => match store().delete(&id) {
            Removal::Removed => reply::empty(StatusCode::NO_CONTENT),
            Removal::NotFound => connection_not_found(),
            Removal::InUse => {
                let message = "The connection has a run in progress.";
                reply::error(StatusCode::CONFLICT, "ConnectionAlreadyInUse", message)
            }
        },
        Route::StartRun(id) => start_run(&mut store(), origin, &id),
        Route::ListRuns(id) => match store().connection(&id) {
            Some(c) => reply::json(StatusCode::OK, &RunsPage::of(c, origin)),
            None => connection_not_found(),
        },
        Route::GetRun(id, run_id) => match store().get_run(&id, &run_id) {
            Some(run) => {
                let run = RunView::of(run, &id);
                reply::json(StatusCode::OK, &OneRun { run })
            }
            None => not_found("RunNotFound", "Requested run is not available."),
        },
        Route::AuthorizationInformation => authorization_information(caller, &query),
        Route::Aid(_) | Route::NotFound => {
            not_found("NotFound", "The requested resource was not found.")
        }
    }
}

fn list_connections(shared: &Shared, caller: &Caller, query: &Query) -> Response<Body> {
    let mut details = Vec::new();
    let imodel_id = query.get("imodelId").filter(|id| !id.is_empty());
    let imodel_id = require(
        &mut details,
        imodel_id,
        "Provided imodelId value is not valid.",
        "imodelId",
    );
    let top = query.get("$top").map_or(Some(MAX_TOP), |top| {
        top.parse().ok().filter(|top| (1..=MAX_TOP).contains(top))
    });
    let top = require(&mut details, top, "Page size is out of limits.", "$top");
    let skip = query.get("$skip").map_or(Some(0), |skip| skip.parse().ok());
    let skip = require(
        &mut details,
        skip,
        "Provided $skip value is not valid.",
        "$skip",
    );
    let (Some(imodel_id), Some(top), Some(skip)) = (imodel_id, top, skip) else {
        return reply::unprocessable("InvalidConnectionsRequest", &details);
    };
    let store = lock(&shared.store);
    let Some(connections) = store.connections(imodel_id) else {
        return imodel_not_found();
    };
    if shared.control.is_denied(&caller.sub, imodel_id) {
        return forbidden();
    }
    let page = ConnectionsPage::of(connections, &shared.origin, imodel_id, skip, top);
    reply::json(StatusCode::OK, &page)
}

fn create_connection(shared: &Shared, caller: &Caller, body: &Bytes) -> Response<Body> {
    let request: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let field = |name: &str| {
        request
            .get(name)
            .and_then(|v| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let mut details = Vec::new();
    let imodel_id = field("iModelId");
    let imodel_id = require(
        &mut details,
        imodel_id,
        "Provided iModelId value is not valid.",
        "iModelId",
    );
    let name = field("displayName");
    let name = require(
        &mut details,
        name,
        "Provided displayName value is not valid.",
        "displayName",
    );
    let kind = field("authenticationType").filter(|k| ["User", "Service"].contains(k));
    let message = "authenticationType must be one of 'User' or 'Service'.";
    let kind = require(&mut details, kind, message, "authenticationType");
    let (Some(imodel_id), Some(name), Some(kind)) = (imodel_id, name, kind) else {
        return reply::unprocessable("InvalidExportConnectionRequest", &details);
    };
    if shared.control.is_denied(&caller.sub, imodel_id) {
        return forbidden();
    }
    let mut store = lock(&shared.store);
    let Some(created) = store.create(imodel_id, name, kind) else {
        return imodel_not_found();
    };
    let location = format!("{}/export/connections/{}", shared.origin, created.id);
    let connection = ConnectionView::of(created, &shared.origin);
    let response = reply::json(StatusCode::CREATED, &OneConnection { connection });
    with_location(response, &location)
}

fn start_run(store: &mut Store, origin: &str, id: &str) -> Response<Body> {
    let (status, run_id) = match store.start_run(id) {
        Some(RunStart::Started(run_id)) => (StatusCode::ACCEPTED, run_id),
        Some(RunStart::AlreadyActive(run_id)) => (StatusCode::SEE_OTHER, run_id),
        None => return connection_not_found(),
    };
    let location = views::run_href(origin, id, &run_id);
    let started = store.connection(id).and_then(|c| c.runs.last());
    let response = match started {
        Some(run) if status == StatusCode::ACCEPTED => reply::json(
            status,
            &OneRun {
                run: RunView::of(run, id),
            },
        ),
        _ => reply::empty(status),
    };
    with_location(response, &location)
}

fn authorization_information(caller: &Caller, query: &Query) -> Response<Body> {
    let Some(redirect) = query.get("redirectUrl").filter(|r| !r.is_empty()) else {
        let detail = Detail::invalid("Provided redirectUrl value is not valid.", "redirectUrl");
        return reply::unprocessable("InvalidAuthorizationInformationRequest", &[detail]);
    };
    let href = format!(
        "https://ims.bentley.com/connect/authorize?client_id={}&response_type=code&redirect_uri={}",
        utf8_percent_encode(&caller.client_id, NON_ALPHANUMERIC),
        utf8_percent_encode(redirect, NON_ALPHANUMERIC),
    );
    let information =
        json!({ "isUserAuthorized": true, "_links": { "authorizationUrl": { "href": href } } });
    reply::json(StatusCode::OK, &information)
}

/// The refusal of a request about the connection `id`: 404 when it does not exist, 403 when
/// the caller may not see its iModel.
fn refusal(shared: &Shared, caller: &Caller, id: &str) -> Option<Response<Body>> {
    let store = lock(&shared.store);
    let Some(connection) = store.connection(id) else {
        return Some(connection_not_found());
    };
    let denied = shared.control.is_denied(&caller.sub, &connection.imodel_id);
    denied.then(forbidden)
}

fn with_location(mut response: Response<Body>, location: &str) -> Response<Body> {
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

fn forbidden() -> Response<Body> {
    let message = "The user has insufficient permissions for the requested operation.";
    reply::error(StatusCode::FORBIDDEN, "InsufficientPermissions", message)
}

fn imodel_not_found() -> Response<Body> {
    not_found("ConnectionNotFound", "Requested iModelId is not available.")
}

fn connection_not_found() -> Response<Body> {
    not_found(
        "ConnectionNotFound",
        "Requested connection is not available.",
    )
}

fn not_found(code: &str, message: &str) -> Response<Body> {
    reply::error(StatusCode::NOT_FOUND, code, message)
}
