// The Glaux console: every element is built with textContent (no HTML from data), and every API
// call carries the session's CSRF token, learnt at login or from /ui/api/session.
"use strict";

let csrf = null;
let running = null;

const $ = (id) => document.getElementById(id);

async function api(method, path, body) {
  const options = { method, headers: { "x-glaux-csrf": csrf || "" }, credentials: "same-origin" };
  if (body !== undefined) {
    options.headers["content-type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch("/ui/api/" + path, options);
  const answer = await response.json().catch(() => ({ error: response.statusText }));
  if (response.status === 401 && path !== "login") {
    showLogin();
  }
  if (!response.ok) {
    throw new Error(answer.error || response.statusText);
  }
  return answer;
}

function show(page) {
  for (const section of document.querySelectorAll(".page")) {
    section.hidden = section.id !== page;
  }
  for (const button of document.querySelectorAll("#nav button")) {
    button.classList.toggle("active", button.dataset.page === page);
  }
}

function showLogin() {
  csrf = null;
  $("nav").hidden = true;
  $("logout").hidden = true;
  $("who").textContent = "";
  show("login");
}

function loggedIn(session) {
  csrf = session.csrf;
  $("who").textContent = session.user || "(administrator)";
  $("nav").hidden = false;
  $("logout").hidden = false;
  show("editor");
}

function fillTable(table, columns, rows, link) {
  table.replaceChildren();
  const head = table.createTHead().insertRow();
  for (const name of columns) {
    const th = document.createElement("th");
    th.textContent = name;
    head.appendChild(th);
  }
  const body = table.createTBody();
  for (const row of rows) {
    const tr = body.insertRow();
    row.forEach((value, i) => {
      const td = tr.insertCell();
      if (value === null) {
        td.textContent = "NULL";
        td.className = "null";
      } else if (link && link[i]) {
        const a = document.createElement("a");
        a.textContent = value;
        a.addEventListener("click", () => link[i](value));
        td.appendChild(a);
      } else {
        td.textContent = value;
      }
    });
  }
}

function summary(run, withState = true) {
  const seconds = (run.elapsed_ms / 1000).toFixed(2);
  let text = (withState ? `${run.state} · ` : "") + `Run time: ${seconds} s · Data scanned: ${run.data_scanned}`;
  if (run.state === "SUCCEEDED") {
    text += ` · ${run.rows_returned} rows` + (run.truncated ? ` (first ${run.rows.length} shown)` : "");
  }
  return text;
}

function progressText(progress) {
  if (!progress) return "";
  return `tasks ${progress.tasks_done}/${progress.tasks} in ${progress.stages} stages · rows produced ${progress.rows}`;
}

// A query's stages as their tasks last reported (live while it runs).
function fillStages(table, run) {
  const stages = run.stage_progress || [];
  const rows = stages.map((s) => [String(s.stage), `${s.tasks_done}/${s.tasks}`,
    Object.entries(s.executors).map(([executor, n]) => `${executor} ×${n}`).join(", "),
    String(s.rows), s.bytes_out_text, s.bytes_scanned_text, `${s.compute_ms} ms`, `${s.elapsed_ms} ms`,
    s.spill_count ? `${s.spilled_text} (${s.spill_count})` : "0", s.errors.join("; ")]);
  fillTable(table, ["stage", "tasks done", "executors (tasks)", "rows out", "bytes out", "scanned", "CPU",
    "time", "spilled", "errors"], rows);
}

async function runStatement() {
  $("error").textContent = "";
  $("results").replaceChildren();
  $("stage-table").replaceChildren();
  $("stages").textContent = "";
  let started;
  try {
    started = await api("POST", "statements", { sql: $("sql").value });
  } catch (error) {
    $("error").textContent = error.message;
    return;
  }
  running = started.id;
  $("run").disabled = true;
  $("cancel").disabled = false;
  for (;;) {
    const run = await api("GET", "statements/" + started.id);
    $("status").textContent = summary(run) + (run.progress ? " · " + progressText(run.progress) : "");
    fillStages($("stage-table"), run);
    if (run.state !== "RUNNING") {
      if (run.error) $("error").textContent = run.error;
      fillTable($("results"), run.columns, run.rows);
      $("stages").textContent = run.stages || "(ran on the scheduler alone)";
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
  running = null;
  $("run").disabled = false;
  $("cancel").disabled = true;
}

async function openQuery(id) {
  show("query");
  // A refresh of the page shown replaces its fields once the answer is in, never blanks them.
  if ($("query-id").textContent !== id) {
    $("query-id").textContent = id;
    for (const field of ["query-state", "query-summary", "query-progress", "query-sql", "query-error",
      "query-stages"]) {
      $(field).textContent = "";
    }
    $("query-stage-table").replaceChildren();
  }
  let run;
  try {
    run = await api("GET", "queries/" + encodeURIComponent(id));
  } catch (error) {
    $("query-error").textContent = error.message;
    return;
  }
  $("query-state").textContent = run.state;
  $("query-summary").textContent = summary(run, false) + (run.door ? ` · ${run.user || "admin"} via ${run.door}` : "");
  $("query-progress").textContent = run.progress ? progressText(run.progress)
    : run.stages && !run.stages_ended ? "It did not run to its end: its stages' numbers as last seen while it ran." : "";
  $("query-sql").textContent = run.sql;
  $("query-error").textContent = run.error || "";
  $("query-stages").textContent = run.stages || "(ran on the scheduler alone)";
  fillStages($("query-stage-table"), run);
  if (run.state === "RUNNING" && !$("query").hidden) {
    setTimeout(() => { if (!$("query").hidden && $("query-id").textContent === id) openQuery(id); }, 500);
  }
}

async function loadHistory(event) {
  if (event) event.preventDefault();
  const filters = new URLSearchParams();
  for (const name of ["state", "user", "workgroup", "door"]) {
    const value = $("filter-" + name).value;
    if (value) filters.set(name, value);
  }
  const history = await api("GET", "history?" + filters.toString());
  fillTable($("history-table"), history.columns, history.rows, { 0: openQuery });
}

async function loadExecutors() {
  const answer = await api("GET", "executors");
  const rows = answer.executors.map((e) => [e.id, e.address, String(e.slots), String(e.running_tasks),
    e.memory_used, e.memory_limit, e.draining ? "draining" : "active", `${e.last_heartbeat_ms} ms ago`]);
  fillTable($("executors-table"), ["executor", "address", "slots", "running tasks", "memory used", "memory limit",
    "state", "last heartbeat"], rows);
}

function listInto(list, names, open) {
  list.replaceChildren();
  for (const name of names) {
    const li = document.createElement("li");
    li.textContent = name;
    li.addEventListener("click", () => {
      for (const other of list.children) other.classList.remove("active");
      li.classList.add("active");
      open(name);
    });
    list.appendChild(li);
  }
}

async function loadCatalog() {
  const answer = await api("GET", "catalog");
  $("catalog-tables").replaceChildren();
  listInto($("catalog-databases"), answer.databases, async (database) => {
    const tables = await api("GET", "catalog/" + encodeURIComponent(database));
    listInto($("catalog-tables"), tables.tables, async (table) => {
      const detail = await api("GET", "catalog/" + encodeURIComponent(database) + "/" + encodeURIComponent(table));
      $("catalog-table-name").textContent = `${database}.${table}`;
      fillTable($("catalog-columns"), detail.columns.columns, detail.columns.rows);
      const partitions = detail.partitions || { columns: ["partition"], rows: [] };
      fillTable($("catalog-partitions"), partitions.columns, partitions.rows);
    });
  });
}

document.addEventListener("DOMContentLoaded", async () => {
  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("login-error").textContent = "";
    try {
      loggedIn(await api("POST", "login", { user: $("login-user").value, password: $("login-password").value }));
    } catch (error) {
      $("login-error").textContent = error.message;
    }
  });
  $("logout").addEventListener("click", async () => {
    await api("POST", "logout").catch(() => {});
    showLogin();
  });
  $("run").addEventListener("click", runStatement);
  $("cancel").addEventListener("click", () => { if (running) api("POST", `statements/${running}/cancel`); });
  $("history-filters").addEventListener("submit", (event) => {
    loadHistory(event).catch((e) => { $("page-error").textContent = e.message; });
  });
  const loaders = { history: loadHistory, executors: loadExecutors, catalog: loadCatalog };
  for (const button of document.querySelectorAll("#nav button")) {
    button.addEventListener("click", () => {
      show(button.dataset.page);
      $("page-error").textContent = "";
      const load = loaders[button.dataset.page];
      if (load) load().catch((e) => { $("page-error").textContent = e.message; });
    });
  }
  try {
    loggedIn(await api("GET", "session"));
  } catch (error) {
    showLogin();
  }
});
