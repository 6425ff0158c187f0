/**
 * The live dashboard served at `GET /` of the admin server: one self-contained page (no CDN, no
 * external fonts, vanilla JS) so it works on an air-gapped host and ships inside `dist/` as a
 * plain string. It listens to `/api/stream` (server-sent events, about one push per second),
 * derives request and error rates from counter deltas, and drains/undrains through the POST API.
 *
 * All data is written with `textContent`, never `innerHTML`, and the page is served with a CSP
 * that allows exactly this inline script and style (by hash), so a hostile backend id or reason
 * string cannot run script.
 *
 * The script and style are `String.raw` literals without interpolation: keep them free of
 * backticks and dollar-brace sequences.
 */
import { createHash } from 'node:crypto';

const STYLE = String.raw`
:root{--ok:#1a7f37;--bad:#cf222e;--ej:#bc4c00;--dr:#6639ba;--unk:#6e7781;--bg:#f6f8fa;--fg:#1f2328;--mute:#656d76;--line:#d0d7de;--card:#fff}
*{box-sizing:border-box}
body{margin:0;font:13px/1.35 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;background:var(--bg);color:var(--fg)}
header{position:sticky;top:0;z-index:2;display:flex;flex-wrap:wrap;gap:8px 14px;align-items:center;padding:8px 14px;background:#24292f;color:#fff}
header h1{font-size:15px;margin:0;font-weight:600;letter-spacing:.02em}
header input{font:inherit;padding:3px 8px;border-radius:4px;border:1px solid #57606a;background:#fff;color:var(--fg);width:240px}
header button{font:inherit;padding:3px 8px;border-radius:4px;border:1px solid #57606a;background:#32383f;color:#fff;cursor:pointer}
#conn{display:inline-flex;align-items:center;gap:5px}
#conn::before{content:"";width:9px;height:9px;border-radius:50%;background:var(--unk)}
#conn.live::before{background:#2da44e}#conn.down::before{background:var(--bad)}
#totals{color:#d0d7de}
#layout{display:grid;grid-template-columns:minmax(0,1fr) 300px;gap:12px;padding:12px 14px;align-items:start}
@media (max-width:1100px){#layout{grid-template-columns:minmax(0,1fr)}}
.svc{background:var(--card);border:1px solid var(--line);border-radius:6px;margin-bottom:6px;overflow:hidden}
.svc-head{display:flex;gap:10px;align-items:center;width:100%;padding:5px 10px;border:0;background:none;font:inherit;color:inherit;text-align:left;cursor:pointer}
.svc-head:hover{background:#f3f4f6}
.caret{width:10px;color:var(--mute)}
.svc-name{font-weight:600;min-width:120px}
.muted{color:var(--mute)}
.badge{font-size:11px;font-weight:600;padding:0 6px;border-radius:10px;color:#fff}
.panic{background:var(--bad)}
.bar{display:flex;width:120px;height:8px;border-radius:4px;overflow:hidden;background:#eaeef2;flex:none}
.bar span{display:block;height:100%}
.counts{flex:1;min-width:0;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.rate{min-width:150px;text-align:right;font-variant-numeric:tabular-nums}
table{width:100%;border-collapse:collapse;table-layout:fixed}
th,td{padding:2px 6px;border-top:1px solid #eaeef2;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;text-align:left}
th{font-weight:600;color:var(--mute);font-size:12px;background:#fafbfc}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
td.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
.st{font-weight:600}
.st-healthy{color:var(--ok)}.st-unhealthy{color:var(--bad)}.st-ejected{color:var(--ej)}.st-draining{color:var(--dr)}.st-unknown{color:var(--unk)}
.bg-healthy{background:var(--ok)}.bg-unhealthy{background:var(--bad)}.bg-ejected{background:var(--ej)}.bg-draining{background:var(--dr)}.bg-unknown{background:var(--unk)}
.err{color:var(--bad);font-weight:600}
td button{font:inherit;font-size:12px;padding:0 8px;border-radius:4px;border:1px solid var(--line);background:#f6f8fa;cursor:pointer}
td button:disabled{opacity:.5;cursor:default}
aside{background:var(--card);border:1px solid var(--line);border-radius:6px;position:sticky;top:52px;max-height:calc(100vh - 64px);display:flex;flex-direction:column}
aside h2{font-size:13px;margin:0;padding:6px 10px;border-bottom:1px solid var(--line)}
#events{list-style:none;margin:0;padding:0;overflow:auto}
#events li{padding:3px 10px;border-bottom:1px solid #eaeef2}
#events .ev-time{color:var(--mute);font-variant-numeric:tabular-nums;margin-right:6px}
#toast{position:fixed;right:14px;bottom:14px;background:var(--bad);color:#fff;padding:8px 12px;border-radius:6px;display:none;max-width:420px}
#empty{padding:20px;color:var(--mute)}
`;

const SCRIPT = String.raw`
(function () {
  'use strict';
  var STATES = ['healthy', 'unhealthy', 'ejected', 'draining', 'unknown'];
  var TOKEN_KEY = 'drover-admin-token';
  var servicesEl = document.getElementById('services');
  var eventsEl = document.getElementById('events');
  var filterEl = document.getElementById('filter');
  var connEl = document.getElementById('conn');
  var totalsEl = document.getElementById('totals');
  var toastEl = document.getElementById('toast');
  var emptyEl = document.getElementById('empty');
  /** name -> service view state */
  var sections = new Map();
  /** user's explicit expand/collapse choice per service */
  var expanded = new Map();
  /** backend key -> {req, fail, t, reqRate, failRate} */
  var rates = new Map();
  var last = null;
  var lastEventsKey = '';
  var toastTimer = 0;

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function setText(e, text) { if (e.textContent !== text) e.textContent = text; }
  function keyOf(svc, id) { return JSON.stringify([svc, id]); }
  function fmtRate(r) {
    if (!(r > 0)) return '0';
    if (r < 10) return r.toFixed(1);
    return String(Math.round(r));
  }
  function ago(iso, now) {
    if (!iso) return '-';
    var t = Date.parse(iso);
    if (isNaN(t)) return '-';
    var s = Math.max(0, Math.round((now - t) / 1000));
    if (s < 60) return s + 's ago';
    if (s < 3600) return Math.floor(s / 60) + 'm ago';
    if (s < 86400) return Math.floor(s / 3600) + 'h ago';
    return Math.floor(s / 86400) + 'd ago';
  }
  function toast(msg) {
    toastEl.textContent = msg;
    toastEl.style.display = 'block';
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { toastEl.style.display = 'none'; }, 6000);
  }
  function isExpanded(name, total) {
    if (filterEl.value.trim() !== '') return true;
    var choice = expanded.get(name);
    if (choice !== undefined) return choice;
    // Large fleets start collapsed so every service's summary fits on one screen.
    return total <= 120;
  }
  function matches(q, svc, b) {
    if (q === '') return true;
    var hay = [svc.name, b.id, b.url, b.state, b.source, b.zone || '', b.reason || ''].join(' ').toLowerCase();
    return hay.indexOf(q) !== -1;
  }

  function createSection(name) {
    var s = { name: name, root: el('section', 'svc'), rows: new Map() };
    s.root.setAttribute('data-service', name);
    s.head = el('button', 'svc-head');
    s.head.type = 'button';
    s.caret = el('span', 'caret');
    s.title = el('span', 'svc-name', name);
    s.balancer = el('span', 'muted');
    s.panic = el('span', 'badge panic', 'PANIC');
    s.bar = el('span', 'bar');
    s.segs = {};
    STATES.forEach(function (st) { var seg = el('span', 'bg-' + st); s.segs[st] = seg; s.bar.appendChild(seg); });
    s.counts = el('span', 'counts muted');
    s.rate = el('span', 'rate');
    [s.caret, s.title, s.balancer, s.panic, s.bar, s.counts, s.rate].forEach(function (c) { s.head.appendChild(c); });
    s.head.addEventListener('click', function () {
      var total = s.lastTotal || 0;
      expanded.set(name, !isExpanded(name, total));
      render();
    });
    s.table = el('table');
    var colgroup = el('colgroup');
    ['', '', '60px', '86px', '34px', '64px', '56px', '52px', '80px', '80px', '', '84px'].forEach(function (w) {
      var c = el('col'); if (w) c.style.width = w; colgroup.appendChild(c);
    });
    s.table.appendChild(colgroup);
    var thead = el('thead');
    var hr = el('tr');
    [['Backend', ''], ['URL', ''], ['Source', ''], ['State', ''], ['W', 'num'], ['Inflight', 'num'], ['Req/s', 'num'],
      ['Err/s', 'num'], ['Requests', 'num'], ['Changed', ''], ['Reason', ''], ['', '']].forEach(function (h) {
      hr.appendChild(el('th', h[1], h[0]));
    });
    thead.appendChild(hr);
    s.table.appendChild(thead);
    s.tbody = el('tbody');
    s.table.appendChild(s.tbody);
    s.root.appendChild(s.head);
    s.root.appendChild(s.table);
    return s;
  }

  function createRow(s, id) {
    var r = { tr: el('tr') };
    r.tr.setAttribute('data-backend', id);
    r.id = el('td', 'mono', id);
    r.id.title = id;
    r.url = el('td', 'mono');
    r.source = el('td', 'muted');
    r.state = el('td', 'st');
    r.weight = el('td', 'num');
    r.inflight = el('td', 'num');
    r.rps = el('td', 'num');
    r.eps = el('td', 'num');
    r.requests = el('td', 'num');
    r.changed = el('td', 'muted');
    r.reason = el('td', 'muted');
    var act = el('td');
    r.button = el('button');
    r.button.type = 'button';
    r.button.addEventListener('click', function () { toggleDrain(s.name, id, r); });
    act.appendChild(r.button);
    [r.id, r.url, r.source, r.state, r.weight, r.inflight, r.rps, r.eps, r.requests, r.changed, r.reason, act]
      .forEach(function (c) { r.tr.appendChild(c); });
    return r;
  }

  function applyState(r, state) {
    setText(r.state, state);
    r.state.className = 'st st-' + state;
    r.state.setAttribute('data-state', state);
    setText(r.button, state === 'draining' ? 'undrain' : 'drain');
  }

  function updateRow(r, svc, b, now) {
    r.view = b;
    setText(r.url, b.url);
    r.url.title = b.url;
    setText(r.source, b.zone ? b.source + ' / ' + b.zone : b.source);
    applyState(r, b.state);
    setText(r.weight, String(b.weight));
    setText(r.inflight, String(b.inflight));
    var rate = rates.get(keyOf(svc.name, b.id)) || { reqRate: 0, failRate: 0 };
    setText(r.rps, fmtRate(rate.reqRate));
    setText(r.eps, fmtRate(rate.failRate));
    r.eps.className = rate.failRate > 0 ? 'num err' : 'num';
    setText(r.requests, String(b.requests));
    setText(r.changed, ago(b.last_change, now));
    r.changed.title = b.last_change || '';
    setText(r.reason, b.reason || '');
    r.reason.title = b.reason || '';
  }

  function updateRates(services) {
    var t = performance.now();
    var seen = new Set();
    services.forEach(function (svc) {
      svc.backends.forEach(function (b) {
        var k = keyOf(svc.name, b.id);
        seen.add(k);
        var p = rates.get(k);
        if (!p) { rates.set(k, { req: b.requests, fail: b.failures, t: t, reqRate: 0, failRate: 0 }); return; }
        var dt = (t - p.t) / 1000;
        if (dt < 0.25) return;
        // A counter that went down means the backend re-joined: restart from its new value.
        p.reqRate = b.requests >= p.req ? (b.requests - p.req) / dt : 0;
        p.failRate = b.failures >= p.fail ? (b.failures - p.fail) / dt : 0;
        p.req = b.requests; p.fail = b.failures; p.t = t;
      });
    });
    rates.forEach(function (_v, k) { if (!seen.has(k)) rates.delete(k); });
  }

  function render() {
    if (!last) return;
    var now = Date.now();
    var q = filterEl.value.trim().toLowerCase();
    var services = last.services;
    var total = 0;
    services.forEach(function (svc) { total += svc.backends.length; });
    var wanted = new Set();
    var sumReq = 0, healthy = 0, shown = 0;
    var prevNode = null;
    services.forEach(function (svc) {
      wanted.add(svc.name);
      var s = sections.get(svc.name);
      if (!s) { s = createSection(svc.name); sections.set(svc.name, s); }
      s.lastTotal = total;
      var nameHit = q === '' || svc.name.toLowerCase().indexOf(q) !== -1;
      var counts = { healthy: 0, unhealthy: 0, ejected: 0, draining: 0, unknown: 0 };
      var svcReq = 0, svcErr = 0, visible = 0;
      var wantedRows = new Set();
      var prevRow = null;
      svc.backends.forEach(function (b) {
        counts[b.state] = (counts[b.state] || 0) + 1;
        var rate = rates.get(keyOf(svc.name, b.id));
        if (rate) { svcReq += rate.reqRate; svcErr += rate.failRate; }
        if (!nameHit && !matches(q, svc, b)) return;
        visible++;
        wantedRows.add(b.id);
        var r = s.rows.get(b.id);
        if (!r) { r = createRow(s, b.id); s.rows.set(b.id, r); }
        updateRow(r, svc, b, now);
        var expectedNext = prevRow ? prevRow.tr.nextSibling : s.tbody.firstChild;
        if (expectedNext !== r.tr) s.tbody.insertBefore(r.tr, expectedNext);
        prevRow = r;
      });
      s.rows.forEach(function (r, id) {
        if (!wantedRows.has(id)) { r.tr.remove(); if (!svc.backends.some(function (b) { return b.id === id; })) s.rows.delete(id); }
      });
      sumReq += svcReq;
      healthy += counts.healthy;
      var n = svc.backends.length;
      var open = isExpanded(svc.name, total);
      setText(s.caret, open ? '\u25BE' : '\u25B8');
      s.head.setAttribute('aria-expanded', String(open));
      s.table.style.display = open && visible > 0 ? '' : 'none';
      setText(s.balancer, svc.balancer);
      s.panic.style.display = svc.panic ? '' : 'none';
      STATES.forEach(function (st) { s.segs[st].style.width = n ? (100 * (counts[st] || 0) / n) + '%' : '0'; });
      var parts = [n + (n === 1 ? ' backend' : ' backends')];
      STATES.forEach(function (st) { if (counts[st]) parts.push(counts[st] + ' ' + st); });
      setText(s.counts, parts.join(' \u00B7 '));
      setText(s.rate, fmtRate(svcReq) + ' req/s \u00B7 ' + fmtRate(svcErr) + ' err/s');
      s.rate.className = svcErr > 0 ? 'rate err' : 'rate';
      var show = q === '' || visible > 0;
      s.root.style.display = show ? '' : 'none';
      if (show) shown++;
      var expectedNext = prevNode ? prevNode.nextSibling : servicesEl.firstChild;
      if (expectedNext !== s.root) servicesEl.insertBefore(s.root, expectedNext);
      prevNode = s.root;
    });
    sections.forEach(function (s, name) { if (!wanted.has(name)) { s.root.remove(); sections.delete(name); } });
    emptyEl.style.display = shown === 0 ? '' : 'none';
    setText(emptyEl, services.length === 0 ? 'No services configured.' : 'No backend matches the filter.');
    setText(totalsEl, services.length + ' services \u00B7 ' + total + ' backends \u00B7 ' + healthy + ' healthy \u00B7 ' +
      fmtRate(sumReq) + ' req/s');
    renderEvents(last.events || [], q);
  }

  function renderEvents(events, q) {
    var k = q + '|' + events.length + '|' + (events.length ? JSON.stringify(events[events.length - 1]) : '');
    if (k === lastEventsKey) return;
    lastEventsKey = k;
    var items = [];
    for (var i = events.length - 1; i >= 0 && items.length < 200; i--) {
      var e = events[i];
      var hay = (e.service + ' ' + e.backend + ' ' + e.to + ' ' + e.reason).toLowerCase();
      if (q !== '' && hay.indexOf(q) === -1) continue;
      var li = el('li');
      var d = new Date(e.at);
      li.appendChild(el('span', 'ev-time', isNaN(d.getTime()) ? e.at : d.toLocaleTimeString()));
      li.appendChild(el('span', 'mono', e.service + '/' + e.backend + ' '));
      li.appendChild(el('span', 'st st-' + e.from, e.from));
      li.appendChild(document.createTextNode(' \u2192 '));
      li.appendChild(el('span', 'st st-' + e.to, e.to));
      if (e.reason) li.appendChild(el('span', 'muted', ' ' + e.reason));
      li.title = e.at;
      items.push(li);
    }
    if (items.length === 0) items.push(el('li', 'muted', 'No events yet.'));
    eventsEl.replaceChildren.apply(eventsEl, items);
  }

  function post(url, token) {
    var headers = {};
    if (token) headers.authorization = 'Bearer ' + token;
    return fetch(url, { method: 'POST', headers: headers, cache: 'no-store' });
  }

  async function toggleDrain(service, id, r) {
    var action = r.view && r.view.state === 'draining' ? 'undrain' : 'drain';
    var url = '/api/services/' + encodeURIComponent(service) + '/backends/' + encodeURIComponent(id) + '/' + action;
    r.button.disabled = true;
    try {
      var token = sessionStorage.getItem(TOKEN_KEY);
      var res = await post(url, token);
      if (res.status === 401) {
        var entered = window.prompt('This admin API needs a token (Authorization: Bearer). Token:');
        if (entered) {
          sessionStorage.setItem(TOKEN_KEY, entered);
          res = await post(url, entered);
        }
        if (res.status === 401) {
          sessionStorage.removeItem(TOKEN_KEY);
          toast('Not authorized: ' + action + ' ' + service + '/' + id + ' was refused.');
          return;
        }
      }
      if (!res.ok) { toast(action + ' ' + service + '/' + id + ' failed: HTTP ' + res.status); return; }
      var view = await res.json();
      // Show the new state now; the next push confirms it.
      var svc = last && last.services.find(function (x) { return x.name === service; });
      if (svc) {
        var i = svc.backends.findIndex(function (b) { return b.id === id; });
        if (i !== -1) svc.backends[i] = view;
      }
      render();
    } catch (err) {
      toast(action + ' ' + service + '/' + id + ' failed: ' + (err && err.message ? err.message : String(err)));
    } finally {
      r.button.disabled = false;
    }
  }

  function onData(data) {
    if (!data || !Array.isArray(data.services)) return;
    updateRates(data.services);
    last = data;
    render();
  }

  function connect() {
    var es = new EventSource('/api/stream');
    es.onopen = function () { connEl.className = 'live'; setText(connEl, 'live'); };
    es.onmessage = function (m) {
      connEl.className = 'live'; setText(connEl, 'live');
      try { onData(JSON.parse(m.data)); } catch (err) { toast('bad data from server: ' + err); }
    };
    // EventSource reconnects by itself; just show that the data is stale meanwhile.
    es.onerror = function () { connEl.className = 'down'; setText(connEl, 'reconnecting'); };
  }

  filterEl.addEventListener('input', function () { render(); });
  document.getElementById('expand').addEventListener('click', function () {
    sections.forEach(function (_s, name) { expanded.set(name, true); }); render();
  });
  document.getElementById('collapse').addEventListener('click', function () {
    sections.forEach(function (_s, name) { expanded.set(name, false); }); render();
  });
  // Keeps "12s ago" moving between pushes.
  setInterval(render, 5000);
  connect();
})();
`;

/** The dashboard page, complete. */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>drover dashboard</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body>
<header>
<h1>drover</h1>
<span id="conn">connecting</span>
<input id="filter" type="search" placeholder="Filter services, backends, states" aria-label="Filter" autocomplete="off">
<button id="expand" type="button">Expand all</button>
<button id="collapse" type="button">Collapse all</button>
<span id="totals"></span>
</header>
<div id="layout">
<main><div id="services"></div><div id="empty"></div></main>
<aside><h2>Recent events</h2><ul id="events"></ul></aside>
</div>
<div id="toast" role="alert"></div>
<script>${SCRIPT}</script>
</body>
</html>
`;

function sha256(text: string): string {
  return `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;
}

/**
 * The Content-Security-Policy sent with the page: only this page's own inline script and style
 * (pinned by hash), requests to the same origin, nothing framed or embedded.
 */
export const DASHBOARD_CSP = [
  "default-src 'none'",
  `script-src ${sha256(SCRIPT)}`,
  // 'unsafe-hashes' is not needed: the script sets styles through the CSSOM, which CSP allows.
  `style-src ${sha256(STYLE)}`,
  "connect-src 'self'",
  'img-src data:',
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');
