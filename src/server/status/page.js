"use strict";
// Reads status.json (relative, so the page also works behind a path prefix) every few
// seconds. Values are set as text, never as markup.
const REFRESH_MS = 5000;

function set(field, value) {
  for (const element of document.querySelectorAll(`[data-field="${field}"]`)) {
    element.textContent = String(value);
  }
}

function percent(ratio) {
  return ratio === null ? "–" : (100 * ratio).toFixed(1) + " %";
}

function human(bytes) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return (unit === 0 ? String(value) : value.toFixed(1)) + " " + units[unit];
}

function duration(seconds) {
  const s = Math.floor(seconds);
  const parts = [[Math.floor(s / 86400), "d"], [Math.floor(s / 3600) % 24, "h"],
    [Math.floor(s / 60) % 60, "min"], [s % 60, "s"]];
  const shown = parts.filter(([n], i) => n > 0 || i === parts.length - 1).slice(0, 2);
  return shown.map(([n, unit]) => `${n} ${unit}`).join(" ");
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function sum(intervals, key) {
  return intervals.reduce((total, counts) => total + counts[key], 0);
}

function render(status) {
  set("version", status.version);
  set("uptime", duration(status.uptime_seconds));
  const state = document.getElementById("state");
  state.textContent = status.draining ? "draining" : "serving";
  state.className = status.draining ? "draining" : "up";
  set("in_flight", status.in_flight);

  set("hit_ratio_1m", percent(status.hit_ratio_1m));
  set("hit_ratio_5m", percent(status.hit_ratio_5m));
  const intervals = status.recent.intervals;
  set("last5.hits", sum(intervals, "hits"));
  set("last5.lookups", sum(intervals, "lookups"));
  set("last5.upstream_errors", sum(intervals, "upstream_errors"));
  for (const key of ["requests", "lookups", "hits", "upstream_calls", "upstream_errors"]) {
    set("totals." + key, status.recent.totals[key]);
  }
  const bars = document.getElementById("bars");
  bars.replaceChildren(...intervals.map((counts) => {
    const bar = document.createElement("div");
    if (counts.lookups === 0) {
      bar.className = "empty";
    } else {
      bar.style.height = (100 * counts.hits / counts.lookups).toFixed(0) + "%";
    }
    bar.title = `${counts.hits} of ${counts.lookups} lookups`;
    return bar;
  }));

  const cache = status.cache;
  set("cache.entries", cache.entries);
  set("cache.bytes", cache.bytes);
  set("cache.max_bytes", cache.max_bytes);
  document.getElementById("bytes-human").textContent = human(cache.bytes);
  document.getElementById("max-human").textContent = human(cache.max_bytes);
  const fill = cache.max_bytes > 0 ? Math.min(1, cache.bytes / cache.max_bytes) : 0;
  document.getElementById("cache-fill").style.width = (100 * fill).toFixed(1) + "%";

  const errors = document.getElementById("errors");
  const now = Date.now() / 1000;
  errors.replaceChildren(...status.recent.upstream_errors.map((error) => {
    const item = document.createElement("li");
    item.textContent = `${error.what}, ${duration(Math.max(0, now - error.at_unix))} ago`;
    return item;
  }));
  if (errors.children.length === 0) {
    const none = document.createElement("li");
    none.className = "none";
    none.textContent = "none";
    errors.append(none);
  }

  const limits = status.rate_limit;
  const listed = limits.budgets.filter((b) => !["unverified", "anonymous", "overflow", "global"].includes(b.name)).length;
  document.getElementById("budget-note").textContent =
    (limits.clustered ? "Drawn from the cluster's Redis while it answers; shown: this replica's local share and the pauses it knows. " : "") +
    `${limits.client_budgets} client budget(s) held` +
    (listed < limits.client_budgets ? `, the ${listed} busiest shown.` : ".");
  const body = document.querySelector("#budgets tbody");
  body.replaceChildren();
  for (const budget of limits.budgets) {
    const row = body.insertRow();
    row.dataset.budget = budget.name;
    cell(row, budget.name);
    cell(row, `${budget.free} of ${budget.burst}`);
    cell(row, budget.hourly_burst === null ? "–" : `${budget.hourly_free} of ${budget.hourly_burst}`);
    cell(row, String(budget.queued));
    if (budget.paused_for_seconds === null) {
      cell(row, "–");
    } else {
      cell(row, `paused, ${budget.paused_for_seconds.toFixed(1)} s left`, "paused");
    }
  }

  const cluster = status.cluster;
  const clusterState = document.querySelector('[data-field="cluster.state"]');
  document.getElementById("cluster").hidden = cluster === null;
  if (cluster === null) {
    clusterState.textContent = "not configured (this process alone)";
    clusterState.className = "";
  } else {
    clusterState.textContent = cluster.up ? "Redis up" : "Redis down: local budgets and memory only";
    clusterState.className = cluster.up ? "up" : "down";
    set("cluster.key_prefix", cluster.key_prefix);
    set("cluster.replicas_hint", cluster.replicas_hint);
    set("cluster.shared_cache", cluster.shared_cache ? "yes" : "no");
    set("cluster.hash_key_adopted", cluster.hash_key_adopted ? "yes" : "no");
    set("cluster.errors", cluster.errors);
  }
  document.title = `itwin-proxy: ${percent(status.hit_ratio_1m)} hits`;
}

async function refresh() {
  const problem = document.getElementById("problem");
  try {
    const response = await fetch("status.json", { cache: "no-store", credentials: "same-origin" });
    if (!response.ok) throw new Error(`status.json answered ${response.status}`);
    render(await response.json());
    problem.hidden = true;
    document.getElementById("updated").textContent = new Date().toLocaleTimeString();
    document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
  } catch (error) {
    problem.textContent = `Cannot read the status: ${error.message}`;
    problem.hidden = false;
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}

refresh();
