//! The Export API as the simulator serves it: paging, error shapes, tokens, writes and runs.

use std::collections::HashSet;

use http::{Method, StatusCode};
use serde_json::json;

use super::super::{DEMO_IMODEL_ID, Scopes, SimConfig, TokenSpec};
use super::{Harness, demo_list};

#[tokio::test]
async fn following_next_links_reaches_every_connection_once() {
    let h = Harness::default().await;
    let mut seen = HashSet::new();
    let mut pages = 0;
    let mut target = Some(demo_list("&$top=25"));
    while let Some(url) = target {
        let reply = h.get(&url).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(
            reply.header("content-type"),
            "application/json; charset=utf-8"
        );
        let page = reply.json();
        assert_eq!(page["_links"]["prev"].is_null(), pages == 0);
        for connection in page["connections"].as_array().unwrap() {
            assert!(seen.insert(connection["id"].as_str().unwrap().to_owned()));
        }
        target = page["_links"]["next"]["href"].as_str().map(str::to_owned);
        pages += 1;
    }
    assert_eq!((seen.len(), pages), (120, 5));
    assert!(seen.contains("conn-1-5db42812"));
}

#[tokio::test]
async fn pages_keep_documented_key_order_pretty_text_and_links() {
    let h = Harness::start(SimConfig {
        link_origin: Some("https://api.bentley.com/".to_owned()),
        ..SimConfig::default()
    })
    .await;
    let reply = h.get(&demo_list("&%24skip=1&%24top=2")).await;
    let text = String::from_utf8(reply.body.to_vec()).unwrap();
    let order = [
        "\"id\"",
        "\"iModelId\"",
        "\"iTwinId\"",
        "\"displayName\"",
        "\"_links\"",
    ];
    let positions: Vec<usize> = order.iter().map(|k| text.find(k).unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
    assert!(text.contains("\n  \"connections\": [") && text.contains("Ünïcode ✓ \\\"quoted\\\""));
    let page = reply.json();
    let origin = "https://api.bentley.com";
    let list = format!("{origin}/export/connections?imodelId={DEMO_IMODEL_ID}");
    assert_eq!(
        page["_links"]["self"]["href"],
        format!("{list}&$skip=1&$top=2")
    );
    assert_eq!(
        page["_links"]["prev"]["href"],
        format!("{list}&$skip=0&$top=2")
    );
    assert_eq!(
        page["_links"]["next"]["href"],
        format!("{list}&$skip=3&$top=2")
    );
    let second = &page["connections"][0];
    assert_eq!(second["id"], "conn-2-5db42812");
    assert_eq!(
        second["_links"]["iModel"]["href"],
        format!("{origin}/imodels/{DEMO_IMODEL_ID}")
    );
    assert_eq!(
        second["_links"]["iTwin"]["href"],
        format!("{origin}/itwins/itwin-5db42812")
    );
    assert!(second["_links"]["lastRun"].is_null());
    let first = h.get(&demo_list("&$top=1")).await.json();
    let last_run = first["connections"][0]["_links"]["lastRun"]["href"]
        .as_str()
        .unwrap();
    assert!(last_run.starts_with(&format!(
        "{origin}/export/connections/conn-1-5db42812/runs/"
    )));
}

#[tokio::test]
async fn errors_have_the_documented_shapes() {
    let h = Harness::default().await;
    let missing = h.get_with(&demo_list(""), None).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(missing.header("content-type"), "application/json");
    let expected = json!({"error": {"code": "HeaderNotFound",
        "message": "Header Authorization was not found in the request. Access denied."}});
    assert_eq!(missing.json(), expected);
    let basic = h
        .try_send(Method::GET, &demo_list(""), Some("Basic YTpi"), "")
        .await
        .unwrap();
    assert_eq!(basic.error_code(), "HeaderNotFound");

    let invalid = |target: &str| {
        let target = target.to_owned();
        let h = &h;
        async move {
            let reply = h.get(&target).await;
            assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{target}");
            assert_eq!(reply.error_code(), "InvalidConnectionsRequest");
            reply.json()["error"]["details"][0].clone()
        }
    };
    let no_imodel = invalid("/export/connections?imodelid=x&$top=5").await;
    assert_eq!(
        no_imodel,
        json!({"code": "InvalidValue", "message": "Provided imodelId value is not valid.", "target": "imodelId"})
    );
    for top in ["0", "1001", "ten", "-1"] {
        let detail = invalid(&demo_list(&format!("&$top={top}"))).await;
        assert_eq!(
            (detail["target"].as_str(), detail["message"].as_str()),
            (Some("$top"), Some("Page size is out of limits."))
        );
    }
    assert_eq!(invalid(&demo_list("&$skip=-1")).await["target"], "$skip");

    let unknown = h.get("/export/connections?imodelId=nope").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(
        unknown.json()["error"]["message"],
        "Requested iModelId is not available."
    );
    h.sim.deny("alice", DEMO_IMODEL_ID);
    let denied = h.get(&demo_list("")).await;
    assert_eq!(
        (denied.status, denied.error_code()),
        (StatusCode::FORBIDDEN, "InsufficientPermissions".to_owned())
    );
    let bob = h.sim.token(&TokenSpec::new("bob"));
    assert_eq!(
        h.get_with(&demo_list(""), Some(&bob)).await.status,
        StatusCode::OK
    );
    let nowhere = h.get("/export/nowhere").await;
    assert_eq!(
        (nowhere.status, nowhere.error_code()),
        (StatusCode::NOT_FOUND, "NotFound".to_owned())
    );
}

#[tokio::test]
async fn tokens_are_checked_for_signature_expiry_and_scope() {
    let h = Harness::default().await;
    let spec = TokenSpec::new("carol").client_id("app-7");
    let refused = [
        (h.sim.forged_token(&spec), "InvalidToken"),
        (h.sim.token(&spec.clone().expires_in(-120)), "InvalidToken"),
        ("not-registered".to_owned(), "InvalidToken"),
        (
            h.sim.token(&spec.clone().scopes(Scopes::Absent)),
            "InsufficientScope",
        ),
        (
            h.sim
                .token(&spec.clone().scopes(Scopes::Array(vec!["openid".into()]))),
            "InsufficientScope",
        ),
    ];
    for (token, code) in refused {
        let reply = h.get_with(&demo_list(""), Some(&token)).await;
        assert_eq!(
            (reply.status, reply.error_code()),
            (StatusCode::UNAUTHORIZED, code.to_owned())
        );
    }
    let spaced = h.sim.token(
        &spec
            .clone()
            .scopes(Scopes::SpaceSeparated("openid export:read".into())),
    );
    assert_eq!(
        h.get_with(&demo_list(""), Some(&spaced)).await.status,
        StatusCode::OK
    );
    h.sim.register_opaque_token("opaque-1", "dave", "app-8");
    h.sim.deny("dave", DEMO_IMODEL_ID);
    let opaque = h.get_with(&demo_list(""), Some("opaque-1")).await;
    assert_eq!(
        opaque.status,
        StatusCode::FORBIDDEN,
        "the opaque token acts as its subject"
    );
}

#[tokio::test]
async fn connections_are_created_read_and_deleted() {
    let h = Harness::default().await;
    let token = Some(h.token.as_str());
    let body =
        json!({"iModelId": DEMO_IMODEL_ID, "displayName": "New", "authenticationType": "Service"});
    let created = h
        .send(
            Method::POST,
            "/export/connections",
            token,
            &body.to_string(),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let id = created.json()["connection"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        created.header("location"),
        format!("{}/export/connections/{id}", h.sim.base_url())
    );
    let tail = h.get(&demo_list("&$skip=120")).await.json();
    assert_eq!(tail["connections"][0]["displayName"], "New");

    let bad = h
        .send(
            Method::POST,
            "/export/connections",
            token,
            "{\"displayName\":1}",
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.error_code(), "InvalidExportConnectionRequest");
    assert_eq!(bad.json()["error"]["details"].as_array().unwrap().len(), 3);
    let elsewhere = json!({"iModelId": "nope", "displayName": "x", "authenticationType": "User"});
    let unknown = h
        .send(
            Method::POST,
            "/export/connections",
            token,
            &elsewhere.to_string(),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    let path = format!("/export/connections/{id}");
    assert_eq!(
        h.get(&path).await.json()["connection"]["authenticationType"],
        "Service"
    );
    assert_eq!(
        h.send(Method::DELETE, &path, token, "").await.status,
        StatusCode::NO_CONTENT
    );
    let gone = h.get(&path).await;
    assert_eq!(
        (gone.status, gone.error_code()),
        (StatusCode::NOT_FOUND, "ConnectionNotFound".to_owned())
    );
    assert_eq!(
        h.send(Method::DELETE, &path, token, "").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn runs_start_redirect_complete_and_list_with_a_malformed_next() {
    let h = Harness::default().await;
    let token = Some(h.token.as_str());
    let runs = "/export/connections/conn-2-5db42812/runs";
    let started = h
        .send(Method::POST, runs, token, "{\"exportType\":\"IFC\"}")
        .await;
    assert_eq!(started.status, StatusCode::ACCEPTED);
    let location = started.header("location").to_owned();
    let run_id = started.json()["run"]["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("{}{runs}/{run_id}", h.sim.base_url()));
    assert_eq!(started.json()["run"]["state"], "Queued");

    let again = h.send(Method::POST, runs, token, "").await;
    assert_eq!(
        (again.status, again.header("location")),
        (StatusCode::SEE_OTHER, location.as_str())
    );
    let conn = "/export/connections/conn-2-5db42812";
    assert_eq!(
        h.send(Method::DELETE, conn, token, "").await.status,
        StatusCode::CONFLICT
    );
    assert_eq!(h.get(&location).await.json()["run"]["state"], "Queued");
    assert_eq!(h.get(&location).await.json()["run"]["state"], "Completed");
    let last_run = &h.get(conn).await.json()["connection"]["_links"]["lastRun"]["href"];
    assert_eq!(last_run, location.as_str());
    assert_eq!(
        h.send(Method::POST, runs, token, "").await.status,
        StatusCode::ACCEPTED
    );

    let listed = h
        .get("/export/connections/conn-1-5db42812/runs")
        .await
        .json();
    assert_eq!(listed["runs"].as_array().unwrap().len(), 50);
    let next = listed["_links"]["next"]["href"].as_str().unwrap();
    let origin = h.sim.link_origin();
    assert_eq!(
        next,
        format!("{origin}/export/connections/conn-1-5db42812/runs&$skip=50&$top=50")
    );
    assert_eq!(h.get(next).await.status, StatusCode::NOT_FOUND);
    assert!(h.get(runs).await.json()["_links"]["next"].is_null());
}

#[tokio::test]
async fn authorization_information_links_to_another_origin() {
    let h = Harness::default().await;
    let reply = h
        .get("/export/authorizationinformation?redirectUrl=http%3A%2F%2Flocalhost%2Fcb")
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    assert_eq!(body["isUserAuthorized"], true);
    let href = body["_links"]["authorizationUrl"]["href"].as_str().unwrap();
    assert!(
        href.starts_with("https://ims.bentley.com/connect/authorize?"),
        "{href}"
    );
    assert!(
        href.contains("redirect_uri=http%3A%2F%2Flocalhost%2Fcb"),
        "{href}"
    );
    let root = h
        .get("/authorizationinformation?redirectUrl=http://localhost")
        .await;
    assert_eq!(root.status, StatusCode::OK);
}
