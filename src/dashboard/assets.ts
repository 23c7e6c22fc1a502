/**
 * The dashboard page as string constants, so `dist/` needs no asset files and there is no front-end build.
 * Served by app.ts as `/`, `/assets/app.css`, `/assets/app.js` and `/assets/favicon.svg` under a CSP of
 * `'self'` only: no inline script or style anywhere.
 *
 * Rules for APP_JS (checked by test/dashboard/app.test.ts): data reaches the DOM only through
 * `textContent`, attributes and CSSOM, never an HTML parser (`innerHTML`, `outerHTML`,
 * `insertAdjacentHTML`, `document.write`). It is written without backticks or `${` so that it can live
 * in a `String.raw` template.
 * @module
 */

/** INDEX_HTML is the page shell; app.js fills it. */
export const INDEX_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>litestream-manager</title>
<link rel="icon" href="/assets/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/assets/app.css">
<script src="/assets/app.js" defer></script>
</head>
<body>
<header class="top">
  <div class="brand">
    <svg class="logo" viewBox="0 0 24 24" aria-hidden="true"><ellipse cx="12" cy="5" rx="8" ry="3"/><path d="M4 5v14c0 1.7 3.6 3 8 3s8-1.3 8-3V5"/><path d="M4 12c0 1.7 3.6 3 8 3s8-1.3 8-3"/></svg>
    <h1>litestream-manager</h1>
    <span id="conn" class="conn conn-connecting" role="status">connecting</span>
  </div>
  <dl class="totals">
    <div><dt>Clients</dt><dd id="t-clients">–</dd></div>
    <div><dt>Replicating</dt><dd id="t-replicating">–</dd></div>
    <div><dt>Waiting</dt><dd id="t-waiting">–</dd></div>
    <div><dt>Errors</dt><dd id="t-errors">–</dd></div>
    <div><dt>Total size</dt><dd id="t-size">–</dd></div>
    <div><dt>Worst lag</dt><dd id="t-lag">–</dd></div>
  </dl>
</header>
<div class="toolbar">
  <input id="search" type="search" placeholder="Filter by GUID, directory, state or error" autocomplete="off" spellcheck="false" aria-label="Filter clients">
  <span id="shown" class="muted"></span>
</div>
<div class="workspace">
<main class="table-wrap" id="table-wrap">
  <table id="clients" role="table" aria-label="Clients">
    <thead role="rowgroup"><tr id="head" role="row"></tr></thead>
    <tbody id="rows" role="rowgroup"></tbody>
  </table>
  <p id="empty" class="empty" hidden>No clients yet. Drop a <code>&lt;guid&gt;.db</code> file into a watched directory.</p>
</main>
<aside id="detail" class="detail" hidden aria-labelledby="d-title">
  <div class="d-head">
    <div>
      <div class="d-kicker">Client</div>
      <h2 id="d-title" class="mono"></h2>
    </div>
    <span id="d-state" class="badge"></span>
    <button id="d-close" class="icon" type="button" aria-label="Close details">&#x2715;</button>
  </div>
  <div class="d-body">
    <section>
      <h3>Lag and throughput <span id="d-span" class="muted">last 5 min</span></h3>
      <div id="d-charts" class="charts"></div>
    </section>
    <section>
      <h3>Restore</h3>
      <div class="cmd"><code id="d-cmd" class="mono"></code><button id="d-copy" type="button">Copy</button></div>
    </section>
    <section>
      <h3>Actions</h3>
      <div class="actions">
        <button id="d-sync" type="button">Sync now</button>
        <button id="d-snapshot" type="button">Snapshot now</button>
        <span id="d-action" class="muted" role="status"></span>
      </div>
    </section>
    <section>
      <h3>Status</h3>
      <dl id="d-fields" class="fields"></dl>
    </section>
  </div>
</aside>
</div>
</body>
</html>
`

/** FAVICON_SVG is the tab icon. */
export const FAVICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" fill="none" stroke="#0e7490" stroke-width="2.2" stroke-linecap="round"><ellipse cx="12" cy="5" rx="8" ry="3"/><path d="M4 5v14c0 1.7 3.6 3 8 3s8-1.3 8-3V5"/><path d="M4 12c0 1.7 3.6 3 8 3s8-1.3 8-3"/></svg>
`

/** APP_CSS styles the page: light and dark schemes, sticky table header, state badges. */
export const APP_CSS = String.raw`
:root {
  --bg: #f6f7f9; --panel: #ffffff; --fg: #1d232b; --muted: #677384; --line: #e3e7ed; --line-strong: #cfd5de;
  --head: #f0f2f5; --hover: #f3f7fb; --sel: #e6f1fb; --accent: #0e7490; --accent-fg: #ffffff;
  --ok: #15803d; --ok-bg: #dcfce7; --info: #1d4ed8; --info-bg: #dbeafe; --idle: #475569; --idle-bg: #e8edf3;
  --warn: #a16207; --warn-bg: #fef3c7; --bad: #b91c1c; --bad-bg: #fee2e2; --conf: #7e22ce; --conf-bg: #f3e8ff;
  --stop: #6b7280; --stop-bg: #eceef1; --chart-lag: #0e7490; --chart-tp: #7c3aed;
  --mono: ui-monospace, SFMono-Regular, "SF Mono", Menlo, Consolas, "DejaVu Sans Mono", "Liberation Mono", monospace;
  --sans: system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "DejaVu Sans", "Liberation Sans", sans-serif;
  color-scheme: light dark;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #0f1318; --panel: #161b22; --fg: #e4e8ee; --muted: #8b97a8; --line: #252c36; --line-strong: #323b47;
    --head: #1b2129; --hover: #1a2230; --sel: #16304a; --accent: #22a3c4;
    --ok: #4ade80; --ok-bg: #12301f; --info: #93c5fd; --info-bg: #172b4d; --idle: #a7b4c6; --idle-bg: #222a35;
    --warn: #fbbf24; --warn-bg: #3a2c0b; --bad: #f87171; --bad-bg: #3b1414; --conf: #d8b4fe; --conf-bg: #2e1a47;
    --stop: #9ca3af; --stop-bg: #23272e; --chart-lag: #22a3c4; --chart-tp: #a78bfa;
  }
}
* { box-sizing: border-box; }
html, body { height: 100%; }
body {
  margin: 0; display: flex; flex-direction: column; background: var(--bg); color: var(--fg);
  font: 13px/1.45 var(--sans); -webkit-font-smoothing: antialiased;
}
.mono, code { font-family: var(--mono); font-size: 12px; }
.muted { color: var(--muted); }
button {
  font: inherit; border: 1px solid var(--line-strong); background: var(--panel); color: var(--fg);
  border-radius: 6px; padding: 5px 12px; cursor: pointer;
}
button:hover { border-color: var(--accent); }
button:disabled { opacity: .55; cursor: progress; }
button.icon { border: none; background: none; font-size: 16px; padding: 4px 8px; color: var(--muted); }
button.icon:hover { color: var(--fg); }

.top {
  display: flex; align-items: center; justify-content: space-between; gap: 24px; flex-wrap: wrap;
  padding: 12px 20px; background: var(--panel); border-bottom: 1px solid var(--line);
}
.brand { display: flex; align-items: center; gap: 10px; }
.brand h1 { font-size: 16px; font-weight: 650; margin: 0; letter-spacing: -.01em; }
.logo { width: 22px; height: 22px; fill: none; stroke: var(--accent); stroke-width: 2.2; stroke-linecap: round; }
.conn { font-size: 11px; padding: 2px 8px 2px 18px; border-radius: 999px; position: relative; color: var(--muted); background: var(--stop-bg); }
.conn::before { content: ""; position: absolute; left: 7px; top: 50%; width: 6px; height: 6px; margin-top: -3px; border-radius: 50%; background: var(--stop); }
.conn-live { color: var(--ok); background: var(--ok-bg); }
.conn-live::before { background: var(--ok); }
.conn-down { color: var(--bad); background: var(--bad-bg); }
.conn-down::before { background: var(--bad); }
.totals { display: flex; gap: 6px; margin: 0; flex-wrap: wrap; }
.totals div { padding: 4px 14px; border-left: 1px solid var(--line); min-width: 96px; }
.totals div:first-child { border-left: none; }
.totals dt { font-size: 11px; text-transform: uppercase; letter-spacing: .05em; color: var(--muted); }
.totals dd { margin: 0; font-size: 18px; font-weight: 600; font-variant-numeric: tabular-nums; }
.totals dd.bad { color: var(--bad); }
.totals dd.warn { color: var(--warn); }

.toolbar { display: flex; align-items: center; gap: 12px; padding: 10px 20px; }
#search {
  width: 420px; max-width: 60vw; padding: 7px 10px; font: inherit; color: var(--fg); background: var(--panel);
  border: 1px solid var(--line-strong); border-radius: 6px; outline: none;
}
#search:focus { border-color: var(--accent); box-shadow: 0 0 0 3px color-mix(in srgb, var(--accent) 20%, transparent); }

.workspace { flex: 1; min-height: 0; display: flex; gap: 14px; margin: 0 20px 16px; }
.table-wrap { flex: 1; min-width: 0; overflow: auto; background: var(--panel); border: 1px solid var(--line); border-radius: 8px; }
/*
 * The table is laid out as CSS grid rows, not with table layout: a text change in one cell then re-lays out one
 * row, not 1000, and content-visibility lets the browser skip rows that are scrolled out of view. Roles keep
 * the table semantics for assistive technology.
 */
table { display: block; min-width: 1590px; }
thead, tbody { display: block; }
thead { position: sticky; top: 0; z-index: 1; }
tr {
  display: grid;
  grid-template-columns: 284px 180px 108px 88px 88px 150px 164px 92px 76px 88px 72px minmax(200px, 1fr);
}
th, td { display: block; min-width: 0; }
tbody tr { content-visibility: auto; contain-intrinsic-size: auto 33px; }
thead th {
  background: var(--head); text-align: left; font-weight: 600; font-size: 11px;
  text-transform: uppercase; letter-spacing: .04em; color: var(--muted); padding: 8px 10px;
  border-bottom: 1px solid var(--line-strong); cursor: pointer; user-select: none; white-space: nowrap;
}
thead th:hover { color: var(--fg); }
thead th.num { text-align: right; }
thead th[aria-sort="ascending"]::after { content: " \25B2"; font-size: 9px; }
thead th[aria-sort="descending"]::after { content: " \25BC"; font-size: 9px; }
tbody td { padding: 6px 10px; border-bottom: 1px solid var(--line); white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
tbody tr { cursor: pointer; }
tbody tr:hover td { background: var(--hover); }
tbody tr.sel td { background: var(--sel); }
tbody tr:focus { outline: 2px solid var(--accent); outline-offset: -2px; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.dim { color: var(--muted); }
td.err { color: var(--bad); }
td.lag-warn { color: var(--warn); font-weight: 600; }
td.lag-bad { color: var(--bad); font-weight: 600; }
.empty { padding: 40px; text-align: center; color: var(--muted); }

.badge {
  display: inline-block; padding: 1px 8px; border-radius: 999px; font-size: 11px; font-weight: 600; line-height: 18px;
  color: var(--idle); background: var(--idle-bg);
}
.s-replicating { color: var(--ok); background: var(--ok-bg); }
.s-idle { color: var(--idle); background: var(--idle-bg); }
.s-starting { color: var(--info); background: var(--info-bg); }
.s-waiting { color: var(--warn); background: var(--warn-bg); }
.s-error { color: var(--bad); background: var(--bad-bg); }
.s-conflict { color: var(--conf); background: var(--conf-bg); }
.s-stopped { color: var(--stop); background: var(--stop-bg); }

.detail {
  flex: none; width: 480px; display: flex; flex-direction: column; min-height: 0;
  background: var(--panel); border: 1px solid var(--line); border-radius: 8px;
}
.detail[hidden] { display: none; }
@media (max-width: 1100px) {
  .detail { position: fixed; top: 0; right: 0; bottom: 0; width: min(480px, 100vw); z-index: 5; border-radius: 0; box-shadow: -12px 0 32px rgba(15, 23, 42, .18); }
}
.d-head { display: flex; align-items: center; gap: 12px; padding: 14px 18px; border-bottom: 1px solid var(--line); }
.d-head > div { flex: 1; min-width: 0; }
.d-kicker { font-size: 11px; text-transform: uppercase; letter-spacing: .05em; color: var(--muted); }
.d-head h2 { margin: 0; font-size: 13px; font-weight: 600; overflow: hidden; text-overflow: ellipsis; }
.d-body { overflow: auto; padding: 4px 18px 18px; }
.d-body h3 { font-size: 12px; font-weight: 600; margin: 16px 0 8px; }
.d-body h3 .muted { font-weight: 400; margin-left: 6px; }
.charts { display: grid; gap: 10px; }
.chart { border: 1px solid var(--line); border-radius: 6px; padding: 8px 10px 4px; }
.chart-head { display: flex; justify-content: space-between; font-size: 11px; color: var(--muted); }
.chart-head strong { color: var(--fg); font-weight: 600; font-variant-numeric: tabular-nums; }
.chart svg { display: block; width: 100%; height: 84px; }
.chart .grid { stroke: var(--line); stroke-width: 1; }
.chart .axis { fill: var(--muted); font-size: 10px; }
.chart .line-lag { fill: none; stroke: var(--chart-lag); stroke-width: 1.6; }
.chart .area-lag { fill: var(--chart-lag); fill-opacity: .12; stroke: none; }
.chart .line-tp { fill: none; stroke: var(--chart-tp); stroke-width: 1.6; }
.chart .area-tp { fill: var(--chart-tp); fill-opacity: .12; stroke: none; }
.cmd { display: flex; gap: 8px; align-items: stretch; }
.cmd code {
  flex: 1; min-width: 0; padding: 8px 10px; background: var(--head); border: 1px solid var(--line); border-radius: 6px;
  white-space: pre-wrap; word-break: break-all; user-select: all;
}
.actions { display: flex; gap: 8px; align-items: center; flex-wrap: wrap; }
.fields { display: grid; grid-template-columns: 150px 1fr; gap: 5px 12px; margin: 0; }
.fields dt { color: var(--muted); }
.fields dd { margin: 0; min-width: 0; overflow-wrap: anywhere; }
.fields dd.err { color: var(--bad); white-space: pre-wrap; font-family: var(--mono); font-size: 12px; }
`

/** APP_JS is the page logic: EventSource feed, row patching batched per animation frame, sort, filter, details. */
export const APP_JS = String.raw`(function () {
  'use strict';

  var HISTORY_MS = 5 * 60 * 1000;
  var SPANS = [{ ms: 30000, label: '30 s' }, { ms: 60000, label: '1 min' }, { ms: 120000, label: '2 min' }, { ms: HISTORY_MS, label: '5 min' }];
  var STATES = ['replicating', 'idle', 'starting', 'waiting', 'error', 'conflict', 'stopped'];
  var STATE_RANK = { error: 0, conflict: 1, waiting: 2, starting: 3, replicating: 4, idle: 5, stopped: 6 };
  var GUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
  var nf = new Intl.NumberFormat('en-US');
  var dtf = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

  // ---- formatting -------------------------------------------------------------------------------------
  function fmtBytes(n) {
    if (n == null) return '—';
    if (n < 1024) return n + ' B';
    var units = ['KiB', 'MiB', 'GiB', 'TiB'];
    var v = n, i = -1;
    do { v /= 1024; i++; } while (v >= 1024 && i < units.length - 1);
    return (v < 10 ? v.toFixed(1) : Math.round(v)) + ' ' + units[i];
  }
  function fmtDuration(ms) {
    if (ms == null) return '—';
    if (ms < 1000) return Math.round(ms) + ' ms';
    if (ms < 60000) return (ms / 1000).toFixed(ms < 10000 ? 1 : 0) + ' s';
    if (ms < 3600000) return Math.floor(ms / 60000) + ' min ' + Math.floor((ms % 60000) / 1000) + ' s';
    if (ms < 86400000) return Math.floor(ms / 3600000) + ' h ' + Math.floor((ms % 3600000) / 60000) + ' min';
    return Math.floor(ms / 86400000) + ' d ' + Math.floor((ms % 86400000) / 3600000) + ' h';
  }
  function fmtAgo(t) {
    if (t == null) return 'never';
    var d = serverNow() - t;
    if (d < 1000) return 'just now';
    return fmtDuration(d) + ' ago';
  }
  function fmtTime(t) {
    return t == null ? 'never' : dtf.format(t) + ' (' + fmtAgo(t) + ')';
  }
  function hex8(n) {
    var s = (n >>> 0).toString(16);
    return '00000000'.slice(s.length) + s;
  }
  function fmtPos(r) {
    return r.generation ? hex8(r.index) + ' / ' + nf.format(r.offset) : '—';
  }
  function stateClass(s) {
    return 'badge s-' + (STATES.indexOf(s) >= 0 ? s : 'unknown');
  }

  var skewMs = 0;
  function serverNow() { return Date.now() + skewMs; }

  // ---- columns ----------------------------------------------------------------------------------------
  // text(r) is what the cell shows; sort(r) orders rows; cls(r) is the cell's class.
  var COLS = [
    { key: 'id', label: 'GUID', text: function (r) { return r.id; }, sort: function (r) { return r.id; }, cls: function () { return 'mono'; } },
    { key: 'dir', label: 'Watch dir', text: function (r) { return r.dir; }, sort: function (r) { return r.dir; }, title: function (r) { return r.path; }, cls: function () { return 'dim'; } },
    { key: 'state', label: 'State', badge: true, text: function (r) { return r.state; }, sort: function (r) { return STATE_RANK[r.state] == null ? 9 : STATE_RANK[r.state]; } },
    { key: 'dbSizeBytes', label: 'DB size', num: true, text: function (r) { return fmtBytes(r.dbSizeBytes); }, sort: function (r) { return r.dbSizeBytes; } },
    { key: 'walSizeBytes', label: 'WAL size', num: true, text: function (r) { return fmtBytes(r.walSizeBytes); }, sort: function (r) { return r.walSizeBytes; } },
    { key: 'generation', label: 'Generation', text: function (r) { return r.generation || '—'; }, sort: function (r) { return r.generation; }, cls: function (r) { return r.generation ? 'mono' : 'dim'; } },
    { key: 'position', label: 'Index / offset', num: true, text: fmtPos, sort: function (r) { return r.index * 4294967296 + r.offset; }, cls: function () { return 'mono'; } },
    { key: 'lastSyncAt', label: 'Last sync', num: true, live: true, text: function (r) { return fmtAgo(r.lastSyncAt); }, sort: function (r) { return r.lastSyncAt || 0; }, title: function (r) { return r.lastSyncAt == null ? '' : dtf.format(r.lastSyncAt); } },
    { key: 'lagMs', label: 'Lag', num: true, text: function (r) { return fmtDuration(r.lagMs); }, sort: function (r) { return r.lagMs == null ? -1 : r.lagMs; },
      cls: function (r) { return r.lagMs == null ? 'dim' : r.lagMs >= 60000 ? 'lag-bad' : r.lagMs >= 5000 ? 'lag-warn' : ''; } },
    { key: 'bytesShipped', label: 'Shipped', num: true, text: function (r) { return fmtBytes(r.bytesShipped); }, sort: function (r) { return r.bytesShipped; } },
    { key: 'objectsWritten', label: 'Objects', num: true, text: function (r) { return nf.format(r.objectsWritten); }, sort: function (r) { return r.objectsWritten; } },
    { key: 'lastError', label: 'Last error', text: function (r) { return r.lastError || ''; }, sort: function (r) { return r.lastError || ''; }, title: function (r) { return r.lastError || ''; }, cls: function () { return 'err'; } }
  ];

  // ---- state ------------------------------------------------------------------------------------------
  var rows = new Map();      // key -> { key, data, tr, cells, text, cls, hay, visible }
  var pending = new Map();   // key -> row data, or null to remove; applied once per animation frame
  var frameRequested = false;
  var orderDirty = true;
  var sortCol = COLS[0], sortDir = 1;
  var filter = '';
  var selectedKey = null;
  var samples = new Map();   // key -> { t: [], lag: [], bytes: [] }, the last 5 minutes

  var el = function (id) { return document.getElementById(id); };
  var tbody, headRow, searchBox, shownEl, emptyEl, detailEl;

  function rowKey(r) { return r.id + '\n' + r.dir; }

  // ---- feed -------------------------------------------------------------------------------------------
  function schedule() {
    if (frameRequested) return;
    frameRequested = true;
    requestAnimationFrame(applyPending);
  }

  function onSnapshot(msg) {
    skewMs = msg.at - Date.now();
    var seen = new Set();
    for (var i = 0; i < msg.clients.length; i++) {
      var k = rowKey(msg.clients[i]);
      seen.add(k);
      pending.set(k, msg.clients[i]);
    }
    rows.forEach(function (_, k) { if (!seen.has(k)) pending.set(k, null); });
    pending.forEach(function (v, k) { if (v !== null && !seen.has(k)) pending.delete(k); });
    schedule();
  }

  function onDelta(msg) {
    skewMs = msg.at - Date.now();
    var ids = new Set(msg.ids);
    var seen = new Set();
    for (var i = 0; i < msg.clients.length; i++) seen.add(rowKey(msg.clients[i]));
    var drop = function (_, k) {
      var id = k.slice(0, k.indexOf('\n'));
      if (ids.has(id) && !seen.has(k)) pending.set(k, null);
    };
    rows.forEach(drop);
    pending.forEach(drop);
    for (var j = 0; j < msg.clients.length; j++) pending.set(rowKey(msg.clients[j]), msg.clients[j]);
    schedule();
  }

  var es = null;
  function connect() {
    var conn = el('conn');
    es = new EventSource('/api/events');
    es.addEventListener('open', function () { conn.textContent = 'live'; conn.className = 'conn conn-live'; });
    es.addEventListener('error', function () {
      if (es.readyState === EventSource.CLOSED) {
        conn.textContent = 'disconnected'; conn.className = 'conn conn-down';
        es = null;
        setTimeout(connect, 5000);
      } else {
        conn.textContent = 'reconnecting'; conn.className = 'conn conn-connecting';
      }
    });
    es.addEventListener('snapshot', function (e) { onSnapshot(JSON.parse(e.data)); });
    es.addEventListener('delta', function (e) { onDelta(JSON.parse(e.data)); });
  }

  // ---- rows -------------------------------------------------------------------------------------------
  function createRow(key) {
    var tr = document.createElement('tr');
    tr.setAttribute('role', 'row');
    tr.tabIndex = 0;
    tr.dataset.key = key;
    tr.dataset.id = key.slice(0, key.indexOf('\n'));
    var cells = [];
    for (var i = 0; i < COLS.length; i++) {
      var td = document.createElement('td');
      td.setAttribute('role', 'cell');
      if (COLS[i].badge) td.appendChild(document.createElement('span'));
      tr.appendChild(td);
      cells.push(td);
    }
    return { key: key, data: null, tr: tr, cells: cells, text: new Array(COLS.length), cls: new Array(COLS.length), title: new Array(COLS.length), hay: '', visible: true };
  }

  function renderCell(row, i) {
    var col = COLS[i], r = row.data, td = row.cells[i];
    var text = col.text(r);
    if (row.text[i] !== text) {
      row.text[i] = text;
      if (col.badge) {
        td.firstChild.textContent = text;
        td.firstChild.className = stateClass(r.state);
      } else {
        td.textContent = text;
      }
    }
    var cls = (col.num ? 'num ' : '') + (col.cls ? col.cls(r) : '');
    if (row.cls[i] !== cls) { row.cls[i] = cls; td.className = cls; }
    if (col.title) {
      var title = col.title(r);
      if (row.title[i] !== title) { row.title[i] = title; td.title = title; }
    }
  }

  function renderRow(row) {
    for (var i = 0; i < COLS.length; i++) renderCell(row, i);
    row.hay = (row.data.id + ' ' + row.data.dir + ' ' + row.data.state + ' ' + (row.data.lastError || '')).toLowerCase();
  }

  function applyPending() {
    frameRequested = false;
    var now = serverNow();
    var selectedChanged = false;
    pending.forEach(function (data, key) {
      var row = rows.get(key);
      if (data === null) {
        if (row) { row.tr.remove(); rows.delete(key); samples.delete(key); }
        if (key === selectedKey) selectedChanged = true;
        return;
      }
      if (!row) {
        row = createRow(key);
        rows.set(key, row);
        orderDirty = true;
      } else if (sortCol.sort(row.data) !== sortCol.sort(data)) {
        orderDirty = true;
      }
      row.data = data;
      if (row.tr.dataset.state !== data.state) row.tr.dataset.state = data.state;
      renderRow(row);
      record(key, data, now);
      if (key === selectedKey) selectedChanged = true;
    });
    pending.clear();
    refreshView();
    updateTotals();
    if (selectedChanged) renderDetail();
  }

  // refreshView applies the filter and the sort order, moving only the rows that are out of place.
  function refreshView() {
    var shown = 0;
    var list = [];
    rows.forEach(function (row) {
      var visible = !filter || row.hay.indexOf(filter) >= 0;
      if (visible !== row.visible) { row.visible = visible; row.tr.hidden = !visible; }
      if (visible) shown++;
      list.push(row);
    });
    if (orderDirty) {
      orderDirty = false;
      list.sort(function (a, b) {
        var x = sortCol.sort(a.data), y = sortCol.sort(b.data);
        if (x < y) return -sortDir;
        if (x > y) return sortDir;
        return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
      });
      var cur = tbody.firstChild;
      for (var i = 0; i < list.length; i++) {
        var tr = list[i].tr;
        if (tr === cur) cur = cur.nextSibling;
        else tbody.insertBefore(tr, cur);
      }
    }
    shownEl.textContent = filter ? 'showing ' + nf.format(shown) + ' of ' + nf.format(rows.size) : nf.format(rows.size) + ' clients';
    emptyEl.hidden = rows.size > 0;
  }

  function updateTotals() {
    var n = 0, repl = 0, waiting = 0, errors = 0, size = 0, worst = null;
    rows.forEach(function (row) {
      var r = row.data;
      n++;
      if (r.state === 'replicating' || r.state === 'idle') repl++;
      if (r.state === 'waiting' || r.state === 'starting') waiting++;
      if (r.state === 'error' || r.state === 'conflict' || r.lastError) errors++;
      size += r.dbSizeBytes + r.walSizeBytes;
      if (r.lagMs != null && (worst == null || r.lagMs > worst)) worst = r.lagMs;
    });
    el('t-clients').textContent = nf.format(n);
    el('t-replicating').textContent = nf.format(repl);
    el('t-waiting').textContent = nf.format(waiting);
    var e = el('t-errors');
    e.textContent = nf.format(errors);
    e.className = errors > 0 ? 'bad' : '';
    el('t-size').textContent = fmtBytes(size);
    var l = el('t-lag');
    l.textContent = worst == null ? '—' : fmtDuration(worst);
    l.className = worst == null ? '' : worst >= 60000 ? 'bad' : worst >= 5000 ? 'warn' : '';
  }

  // Relative times ("12 s ago") age without events: refresh those cells once a second.
  function tick() {
    var liveCols = [];
    for (var i = 0; i < COLS.length; i++) if (COLS[i].live) liveCols.push(i);
    rows.forEach(function (row) {
      if (!row.visible) return;
      for (var j = 0; j < liveCols.length; j++) renderCell(row, liveCols[j]);
    });
    if (selectedKey) renderDetail();
  }

  // ---- sort and filter ---------------------------------------------------------------------------------
  function buildHead() {
    COLS.forEach(function (col) {
      var th = document.createElement('th');
      th.scope = 'col';
      th.setAttribute('role', 'columnheader');
      th.textContent = col.label;
      th.tabIndex = 0;
      if (col.num) th.className = 'num';
      var activate = function () {
        if (sortCol === col) sortDir = -sortDir;
        else { sortCol = col; sortDir = col.num ? -1 : 1; }
        orderDirty = true;
        markSort();
        refreshView();
      };
      th.addEventListener('click', activate);
      th.addEventListener('keydown', function (e) { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); activate(); } });
      col.th = th;
      headRow.appendChild(th);
    });
    markSort();
  }
  function markSort() {
    COLS.forEach(function (col) {
      if (col === sortCol) col.th.setAttribute('aria-sort', sortDir > 0 ? 'ascending' : 'descending');
      else col.th.removeAttribute('aria-sort');
    });
  }

  // ---- history and charts --------------------------------------------------------------------------------
  function record(key, r, now) {
    if (r.lagMs == null) return;
    var h = samples.get(key);
    if (!h) { h = { t: [], lag: [], bytes: [] }; samples.set(key, h); }
    var last = h.t.length - 1;
    if (last >= 0 && now - h.t[last] < 1000) {
      h.lag[last] = Math.max(h.lag[last], r.lagMs);
      h.bytes[last] = r.bytesShipped;
    } else {
      h.t.push(now); h.lag.push(r.lagMs); h.bytes.push(r.bytesShipped);
    }
    var cut = 0;
    while (cut < h.t.length && h.t[cut] < now - HISTORY_MS - 2000) cut++;
    if (cut > 0) { h.t.splice(0, cut); h.lag.splice(0, cut); h.bytes.splice(0, cut); }
  }

  var SVG_NS = 'http://www.w3.org/2000/svg';
  function svgEl(name, attrs) {
    var e = document.createElementNS(SVG_NS, name);
    for (var k in attrs) e.setAttribute(k, String(attrs[k]));
    return e;
  }

  // chart draws one series (points [t, v]) over the last 5 minutes as a line with a soft area.
  function chart(title, points, kind, fmt, current, span) {
    var W = 520, H = 84, top = 6, bottom = 16;
    var box = document.createElement('div');
    box.className = 'chart';
    var head = document.createElement('div');
    head.className = 'chart-head';
    var name = document.createElement('span');
    name.textContent = title;
    var now = document.createElement('strong');
    now.textContent = current;
    head.appendChild(name);
    head.appendChild(now);
    box.appendChild(head);
    var svg = svgEl('svg', { viewBox: '0 0 ' + W + ' ' + H, preserveAspectRatio: 'none', role: 'img' });
    svg.setAttribute('aria-label', title + ' over the last ' + span.label);
    var t1 = serverNow(), t0 = t1 - span.ms;
    var max = 0;
    for (var i = 0; i < points.length; i++) if (points[i][0] >= t0 && points[i][1] > max) max = points[i][1];
    var ymax = max > 0 ? max * 1.15 : 1;
    var x = function (t) { return ((Math.max(t, t0) - t0) / span.ms) * W; };
    var y = function (v) { return top + (1 - v / ymax) * (H - top - bottom); };
    if (max > 0) [0.5, 1].forEach(function (f) { svg.appendChild(svgEl('line', { x1: 0, x2: W, y1: y(max * f), y2: y(max * f), 'class': 'grid' })); });
    svg.appendChild(svgEl('line', { x1: 0, x2: W, y1: H - bottom, y2: H - bottom, 'class': 'grid' }));
    if (points.length > 0) {
      var d = '';
      for (var j = 0; j < points.length; j++) d += (j === 0 ? 'M' : 'L') + x(points[j][0]).toFixed(1) + ',' + y(points[j][1]).toFixed(1);
      var lastY = y(points[points.length - 1][1]).toFixed(1);
      d += 'L' + W + ',' + lastY;
      var area = d + 'L' + W + ',' + (H - bottom) + 'L' + x(points[0][0]).toFixed(1) + ',' + (H - bottom) + 'Z';
      svg.appendChild(svgEl('path', { d: area, 'class': 'area-' + kind }));
      svg.appendChild(svgEl('path', { d: d, 'class': 'line-' + kind }));
    }
    var lbl = function (tx, anchor, text, yy) {
      var t = svgEl('text', { x: tx, y: yy, 'text-anchor': anchor, 'class': 'axis' });
      t.textContent = text;
      svg.appendChild(t);
    };
    lbl(2, 'start', '−' + span.label, H - 3);
    lbl(W - 2, 'end', 'now', H - 3);
    lbl(2, 'start', 'max ' + fmt(max), top + 9);
    box.appendChild(svg);
    return box;
  }

  function renderCharts(key, r) {
    var host = el('d-charts');
    var h = samples.get(key) || { t: [], lag: [], bytes: [] };
    var lag = [], tp = [];
    for (var i = 0; i < h.t.length; i++) {
      lag.push([h.t[i], h.lag[i]]);
      if (i > 0) {
        var dt = (h.t[i] - h.t[i - 1]) / 1000;
        var db = h.bytes[i] - h.bytes[i - 1];
        var rate = dt > 0 && db > 0 ? db / dt : 0;
        tp.push([h.t[i - 1], rate]);
        tp.push([h.t[i], rate]);
      }
    }
    // After the last sample nothing was shipped: throughput returns to 0.
    if (h.t.length > 0) tp.push([h.t[h.t.length - 1] + 1, 0]);
    var rateNow = 0;
    if (h.t.length > 1 && serverNow() - h.t[h.t.length - 1] < 2000) rateNow = tp.length > 1 ? tp[tp.length - 2][1] : 0;
    // The window grows with the history kept since the page opened: 30 s, 1, 2, then 5 minutes.
    var have = h.t.length > 0 ? serverNow() - h.t[0] : 0;
    var span = SPANS[SPANS.length - 1];
    for (var k = 0; k < SPANS.length; k++) if (SPANS[k].ms >= have) { span = SPANS[k]; break; }
    el('d-span').textContent = 'last ' + span.label;
    host.replaceChildren(
      chart('Lag', lag, 'lag', fmtDuration, r.lagMs == null ? '—' : fmtDuration(r.lagMs), span),
      chart('Throughput', tp, 'tp', function (v) { return fmtBytes(v) + '/s'; }, fmtBytes(rateNow) + '/s', span)
    );
  }

  // ---- detail view ---------------------------------------------------------------------------------------
  var FIELDS = [
    ['State', function (r) { return r.state + (r.replicatorState && r.replicatorState !== r.state ? ' (replicator: ' + r.replicatorState + ')' : ''); }],
    ['Watch dir', function (r) { return r.dir; }],
    ['Database', function (r) { return r.path; }],
    ['DB size', function (r) { return fmtBytes(r.dbSizeBytes) + ' (' + nf.format(r.dbSizeBytes) + ' bytes)'; }],
    ['WAL size', function (r) { return fmtBytes(r.walSizeBytes) + ' (' + nf.format(r.walSizeBytes) + ' bytes)'; }],
    ['Page size', function (r) { return r.pageSize ? nf.format(r.pageSize) + ' bytes' : '—'; }],
    ['Generation', function (r) { return r.generation || '—'; }],
    ['Position', function (r) { return r.generation ? r.generation + '/' + hex8(r.index) + ':' + r.offset : '—'; }],
    ['Generations started', function (r) { return nf.format(r.generationsStarted); }],
    ['Last sync', function (r) { return fmtTime(r.lastSyncAt); }],
    ['Last snapshot', function (r) { return fmtTime(r.lastSnapshotAt); }],
    ['Lag', function (r) { return fmtDuration(r.lagMs); }],
    ['Last shipped lag', function (r) { return fmtDuration(r.lastLagMs); }],
    ['Bytes shipped', function (r) { return fmtBytes(r.bytesShipped) + ' (' + nf.format(r.bytesShipped) + ' bytes)'; }],
    ['Objects written', function (r) { return nf.format(r.objectsWritten); }],
    ['Detected', function (r) { return fmtTime(r.detectedAt); }],
    ['Replica', function (r) { return r.replica || '—'; }],
    ['Restore drill', function (r) {
      var d = r.drill;
      if (!d) return 'not yet';
      var what = d.skipped ? 'skipped' : d.ok ? 'passed' + (d.compared ? ' (rows compared)' : '') : 'FAILED';
      return what + ', ' + fmtAgo(d.at) + (d.error ? ': ' + d.error : '');
    }],
    ['Last error', function (r) { return r.lastError || 'none'; }, function (r) { return r.lastError ? 'err' : ''; }]
  ];
  var fieldEls = [];

  function buildDetail() {
    var dl = el('d-fields');
    FIELDS.forEach(function (f) {
      var dt = document.createElement('dt');
      dt.textContent = f[0];
      var dd = document.createElement('dd');
      dl.appendChild(dt);
      dl.appendChild(dd);
      fieldEls.push(dd);
    });
    el('d-close').addEventListener('click', closeDetail);
    el('d-copy').addEventListener('click', copyRestore);
    el('d-sync').addEventListener('click', function () { act('sync'); });
    el('d-snapshot').addEventListener('click', function () { act('snapshot'); });
    document.addEventListener('keydown', function (e) { if (e.key === 'Escape' && selectedKey) closeDetail(); });
  }

  function openDetail(key) {
    if (selectedKey && rows.has(selectedKey)) rows.get(selectedKey).tr.classList.remove('sel');
    selectedKey = key;
    var row = rows.get(key);
    if (row) row.tr.classList.add('sel');
    el('d-action').textContent = '';
    detailEl.hidden = false;
    if (row) window.history.replaceState(null, '', '#' + row.data.id);
    renderDetail();
  }

  function closeDetail() {
    if (selectedKey && rows.has(selectedKey)) {
      var tr = rows.get(selectedKey).tr;
      tr.classList.remove('sel');
      tr.focus();
    }
    selectedKey = null;
    detailEl.hidden = true;
    window.history.replaceState(null, '', location.pathname);
  }

  function renderDetail() {
    if (!selectedKey) return;
    var row = rows.get(selectedKey);
    if (!row) {
      el('d-state').textContent = 'removed';
      el('d-state').className = 'badge s-stopped';
      return;
    }
    var r = row.data;
    el('d-title').textContent = r.id;
    el('d-state').textContent = r.state;
    el('d-state').className = stateClass(r.state);
    el('d-cmd').textContent = r.restoreCommand || 'no replica for this client';
    el('d-copy').disabled = !r.restoreCommand;
    for (var i = 0; i < FIELDS.length; i++) {
      var f = FIELDS[i];
      var text = f[1](r);
      if (fieldEls[i].textContent !== text) fieldEls[i].textContent = text;
      fieldEls[i].className = f[2] ? f[2](r) : '';
    }
    renderCharts(selectedKey, r);
  }

  function copyRestore() {
    var code = el('d-cmd');
    var done = function () { el('d-copy').textContent = 'Copied'; setTimeout(function () { el('d-copy').textContent = 'Copy'; }, 1500); };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(code.textContent).then(done, selectCode);
    } else {
      selectCode();
    }
    function selectCode() {
      var range = document.createRange();
      range.selectNodeContents(code);
      var sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
    }
  }

  function act(what) {
    var row = selectedKey && rows.get(selectedKey);
    if (!row) return;
    var id = row.data.id;
    var status = el('d-action');
    var buttons = [el('d-sync'), el('d-snapshot')];
    buttons.forEach(function (b) { b.disabled = true; });
    status.textContent = what === 'sync' ? 'syncing…' : 'taking a snapshot…';
    fetch('/api/clients/' + encodeURIComponent(id) + '/' + what, { method: 'POST', headers: { Accept: 'application/json' }, credentials: 'same-origin' })
      .then(function (res) {
        return res.json().then(function (body) { return { ok: res.ok, body: body }; }, function () { return { ok: false, body: { error: 'HTTP ' + res.status } }; });
      })
      .then(function (x) {
        if (x.ok && x.body.pos) {
          var p = x.body.pos;
          status.textContent = (what === 'sync' ? 'durable at ' : 'snapshot at ') + p.generation + '/' + hex8(p.index) + ':' + p.offset;
        } else {
          status.textContent = 'failed: ' + (x.body && x.body.error ? x.body.error : 'unknown error');
        }
      }, function (err) { status.textContent = 'failed: ' + err.message; })
      .then(function () { buttons.forEach(function (b) { b.disabled = false; }); });
  }

  // ---- boot ----------------------------------------------------------------------------------------------
  function boot() {
    tbody = el('rows');
    headRow = el('head');
    searchBox = el('search');
    shownEl = el('shown');
    emptyEl = el('empty');
    detailEl = el('detail');
    buildHead();
    buildDetail();
    var filterTimer = 0;
    searchBox.addEventListener('input', function () {
      clearTimeout(filterTimer);
      filterTimer = setTimeout(function () { filter = searchBox.value.trim().toLowerCase(); refreshView(); }, 80);
    });
    tbody.addEventListener('click', function (e) {
      var tr = e.target.closest('tr');
      if (tr && tr.dataset.key) openDetail(tr.dataset.key);
    });
    tbody.addEventListener('keydown', function (e) {
      if (e.key !== 'Enter') return;
      var tr = e.target.closest('tr');
      if (tr && tr.dataset.key) openDetail(tr.dataset.key);
    });
    // #<guid> in the address opens that client's details once it arrives.
    var wanted = location.hash.slice(1);
    if (GUID_RE.test(wanted)) {
      var tryOpen = setInterval(function () {
        rows.forEach(function (row, key) { if (wanted && row.data.id === wanted) { openDetail(key); wanted = ''; } });
        if (!wanted) clearInterval(tryOpen);
      }, 200);
      setTimeout(function () { clearInterval(tryOpen); }, 10000);
    }
    setInterval(tick, 1000);
    connect();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', boot);
  else boot();
})();
`
