/*
 * drover's dashboard (served at / of the admin address). Plain browser JavaScript, no build step.
 *
 * Data: /api/stream (server-sent events, about one push per second: services and recent events),
 * /api/series (per-second time series kept by drover for 15 minutes, fetched whole once and then
 * only the new seconds), /api/routes and /api/services/{service}/checks. Charts: uPlot.
 *
 * Views, one URL each (the part after #): #/ overview (#/?q=TEXT filtered), #/service/NAME (and
 * #/service/NAME/backend/ID for one backend's charts), #/routes, #/events?q=TEXT&kind=health,reload.
 *
 * Every value from the server is written with textContent, never as HTML, and the page's CSP
 * allows no inline script: a hostile backend id or reason string cannot run script.
 * The uPlot instances are kept in window.droverCharts (by name) so tests can read what was drawn.
 */
(function () {
  'use strict';
  var STATES = ['healthy', 'unhealthy', 'ejected', 'draining', 'unknown'];
  var CLASSES = ['2xx', '3xx', '4xx', '5xx', '1xx'];
  var CLASS_COLORS = { '1xx': '#8c959f', '2xx': '#1a7f37', '3xx': '#0969da', '4xx': '#bc4c00', '5xx': '#cf222e' };
  var KINDS = ['connect', 'timeout', 'reset', 'status'];
  var KIND_COLORS = { connect: '#cf222e', timeout: '#bc4c00', reset: '#8250df', status: '#6e7781' };
  var TOKEN_KEY = 'drover-admin-token';
  /** seconds of history kept in the page (what drover keeps) */
  var KEEP = 900;
  /** seconds shown in the overview sparklines */
  var SPARK = 300;
  var SERIES_POLL_MS = 2000;
  /** seconds the overview's figures (req/s, 5xx/s, p99) are taken over */
  var RECENT = 5;

  var $ = function (id) { return document.getElementById(id); };
  var servicesEl = $('services');
  var eventsEl = $('events');
  var filterEl = $('filter');
  var connEl = $('conn');
  var totalsEl = $('totals');
  var configEl = $('config');
  var toastEl = $('toast');
  var emptyEl = $('empty');

  /** chart name -> uPlot instance (read by the browser tests) */
  var charts = {};
  window.droverCharts = charts;

  /** the latest /api/stream push */
  var last = null;
  /** name -> overview section */
  var sections = new Map();
  /** user's expand/collapse choice per service */
  var expanded = new Map();
  /** backend key -> {req, fail, t, reqRate, failRate} (from counter deltas) */
  var rates = new Map();
  var lastEventsKey = '';
  var toastTimer = 0;
  /** current route, from location.hash */
  var route = { view: 'overview' };

  // ---- small helpers -------------------------------------------------------------------

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
  function fmtMs(v) {
    if (v === null || v === undefined || !isFinite(v)) return '-';
    if (v < 10) return v.toFixed(2);
    if (v < 100) return v.toFixed(1);
    return String(Math.round(v));
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
  function getJson(url) {
    return fetch(url, { cache: 'no-store' }).then(function (res) {
      if (res.status === 404) return null;
      if (!res.ok) throw new Error('HTTP ' + res.status + ' from ' + url);
      return res.json();
    });
  }
  function serviceHref(name, backend) {
    var h = '#/service/' + encodeURIComponent(name);
    if (backend !== undefined) h += '/backend/' + encodeURIComponent(backend);
    return h;
  }
  function findService(name) {
    if (!last) return undefined;
    return last.services.find(function (s) { return s.name === name; });
  }

  // ---- routing (one URL per view) ------------------------------------------------------------

  function parseHash() {
    var h = location.hash.replace(/^#/, '');
    var q = '';
    var qi = h.indexOf('?');
    if (qi !== -1) { q = h.slice(qi + 1); h = h.slice(0, qi); }
    var params = new URLSearchParams(q);
    var parts = h.split('/').filter(function (p) { return p !== ''; }).map(function (p) {
      try { return decodeURIComponent(p); } catch (e) { return p; }
    });
    if (parts[0] === 'service' && parts[1] !== undefined) {
      return { view: 'service', service: parts[1], backend: parts[2] === 'backend' ? parts[3] : undefined, params: params };
    }
    if (parts[0] === 'routes') return { view: 'routes', params: params };
    if (parts[0] === 'events') return { view: 'events', params: params };
    return { view: 'overview', params: params };
  }

  function onRoute() {
    route = parseHash();
    document.querySelectorAll('.view').forEach(function (v) { v.hidden = v.id !== 'view-' + route.view; });
    document.querySelectorAll('#nav a').forEach(function (a) {
      a.classList.toggle('active', a.getAttribute('data-view') === route.view);
    });
    document.body.setAttribute('data-view', route.view);
    if (route.view === 'overview') filterEl.value = route.params.get('q') || '';
    if (route.view === 'events') {
      $('ev-filter').value = route.params.get('q') || '';
      var kinds = route.params.get('kind');
      document.querySelectorAll('#view-events input[data-kind]').forEach(function (c) {
        c.checked = !kinds || kinds.split(',').indexOf(c.getAttribute('data-kind')) !== -1;
      });
    }
    if (route.view === 'service') {
      document.title = 'drover: ' + route.service;
      setText($('svc-title'), route.service);
      serviceViewReset();
    } else {
      document.title = 'drover dashboard';
    }
    render();
    pollNow();
  }

  // ---- time series cache --------------------------------------------------------------------

  /** key -> {t, req, err, p50, p99} (arrays aligned on t, oldest first) */
  var seriesCache = new Map();
  /** query -> last second fetched, so the next fetch asks only for what is new */
  var sinceFor = new Map();

  function seriesKey(service, backend) { return service + '\u0000' + (backend || ''); }

  function emptySeries() {
    var s = { t: [], req: {}, err: {}, p50: [], p99: [] };
    CLASSES.forEach(function (c) { s.req[c] = []; });
    KINDS.forEach(function (k) { s.err[k] = []; });
    return s;
  }

  function mergeSeries(v, now) {
    var key = seriesKey(v.service, v.backend);
    var s = seriesCache.get(key);
    if (!s) { s = emptySeries(); seriesCache.set(key, s); }
    var lastT = s.t.length ? s.t[s.t.length - 1] : -Infinity;
    for (var i = 0; i < v.t.length; i++) {
      if (v.t[i] <= lastT) continue;
      s.t.push(v.t[i]);
      CLASSES.forEach(function (c) { s.req[c].push(v.req[c][i]); });
      KINDS.forEach(function (k) { s.err[k].push(v.err[k][i]); });
      s.p50.push(v.p50_ms[i]);
      s.p99.push(v.p99_ms[i]);
    }
    var drop = 0;
    while (drop < s.t.length && s.t[drop] <= now - KEEP) drop++;
    if (drop > 0) {
      s.t.splice(0, drop);
      CLASSES.forEach(function (c) { s.req[c].splice(0, drop); });
      KINDS.forEach(function (k) { s.err[k].splice(0, drop); });
      s.p50.splice(0, drop);
      s.p99.splice(0, drop);
    }
    return s;
  }

  /** Fetches /api/series?QUERY (only the new seconds) and merges every series it returns. */
  function fetchSeries(query) {
    var since = sinceFor.get(query);
    var url = '/api/series?' + query + (since !== undefined ? (query ? '&' : '') + 'since=' + since : '');
    return getJson(url).then(function (data) {
      if (!data) return [];
      var max = since;
      var merged = data.series.map(function (v) {
        if (v.t.length && (max === undefined || v.t[v.t.length - 1] > max)) max = v.t[v.t.length - 1];
        return { view: v, data: mergeSeries(v, data.now) };
      });
      if (max !== undefined) sinceFor.set(query, max);
      return merged;
    });
  }

  function total(s, i) {
    var n = 0;
    CLASSES.forEach(function (c) { n += s.req[c][i] || 0; });
    return n;
  }
  /**
   * A service's current figures from its series: requests/s and 5xx answers/s averaged over the
   * last RECENT complete seconds (one second alone jitters too much to read), and the highest p99
   * among them. Counted where the client's answer is counted, so drover's own answers (a queue
   * timeout's 503, no backend) are in, and a retried request counts once.
   */
  function recent(s, now) {
    var out = { req: 0, err: 0, p99: null };
    if (!s) return out;
    var n = 0;
    for (var i = s.t.length - 1; i >= 0 && s.t[i] > now - 1 - RECENT; i--) {
      out.req += total(s, i);
      out.err += s.req['5xx'][i] || 0;
      if (s.p99[i] !== null && (out.p99 === null || s.p99[i] > out.p99)) out.p99 = s.p99[i];
      n++;
    }
    // every second since the series began is there, zeros included: n is the window's length
    if (n > 0) { out.req /= n; out.err /= n; }
    return out;
  }
  function lastValue(arr) {
    for (var i = arr.length - 1; i >= 0; i--) if (arr[i] !== null && arr[i] !== undefined) return arr[i];
    return null;
  }

  // ---- charts ----------------------------------------------------------------------------------

  /**
   * y from 0 (a rate's axis that starts above 0 turns small changes into cliffs) to at least 1 (a
   * chart of zeros is a flat line at the bottom, not one in the middle of a 0-100 axis).
   */
  function fromZero(_u, _min, max) {
    return [0, max > 1 ? max * 1.05 : 1];
  }

  /** y axis labels that fit the axis: 1.5k, 10k, 2M (uPlot's default writes 10,000, cut to 0,000). */
  function shortNumbers(_u, splits) {
    return splits.map(function (v) {
      if (v === null || v === undefined) return null;
      var a = Math.abs(v);
      if (a >= 1e6) return +(v / 1e6).toPrecision(3) + 'M';
      if (a >= 1e3) return +(v / 1e3).toPrecision(3) + 'k';
      return +v.toPrecision(3) + '';
    });
  }

  /** A log scale's range out to whole powers of 10, so at least two labelled lines frame the data. */
  function wholeDecades(_u, min, max) {
    if (!(min > 0) || !(max > 0)) return [1, 100];
    var r = uPlot.rangeLog(min, max, 10, true);
    return r[0] === r[1] ? [r[0], r[0] * 10] : r;
  }

  /** A log axis's ticks, grid lines and labels at powers of 10 only (not at 2, 3, ... 9 of each decade). */
  function decades(_u, splits) {
    return splits.map(function (v) {
      var e = Math.log10(v);
      return Math.abs(e - Math.round(e)) < 1e-9 ? v : null;
    });
  }

  function makeChart(name, target, series, y) {
    if (charts[name]) charts[name].destroy();
    var width = Math.max(200, (target.parentNode && target.parentNode.clientWidth || 420) - 16);
    var data = [[]];
    series.forEach(function () { data.push([]); });
    var yAxis = { stroke: '#656d76', size: 48, values: shortNumbers };
    if (y && y.distr === 3) {
      yAxis.filter = decades;
      yAxis.grid = { filter: decades };
      yAxis.ticks = { filter: decades };
    }
    var u = new uPlot({
      width: width,
      height: 190,
      // room on the right for the last time label
      padding: [8, 24, 0, 0],
      scales: { x: { time: true }, y: y || { range: fromZero } },
      // the legend's time: the second's wall-clock time (uPlot's default shows minutes only)
      series: [{ value: function (_u, t) { return t === null || t === undefined ? '--' : clockLabels(null, [t])[0]; } }].concat(series),
      axes: [{ stroke: '#656d76', space: 70, values: clockLabels }, yAxis],
      legend: { live: true },
      // the legend shows the newest second's values unless the pointer is over the chart
      hooks: { setCursor: [function (c) { if (c.cursor.idx === null || c.cursor.idx === undefined) showNewest(c); }] },
    }, data, target);
    charts[name] = u;
    return u;
  }

  /** Sets the legend to the newest point (uPlot shows "--" there while the pointer is elsewhere). */
  function showNewest(u) {
    var n = u.data[0] ? u.data[0].length : 0;
    if (n > 0) u.setLegend({ idx: n - 1 }, false);
  }

  function line(label, color, extra) {
    return Object.assign({ label: label, stroke: color, width: 1.5, points: { show: false }, value: legendValue }, extra || {});
  }

  /** A legend value: "-" for a second without a sample (uPlot writes nothing), else as the tables write it. */
  function legendValue(_u, v) {
    if (v === null || v === undefined) return '-';
    return Number.isInteger(v) ? String(v) : fmtMs(v);
  }

  /** x axis labels: local wall-clock time (uPlot's default adds a date line that crowds small charts) */
  function clockLabels(_u, ticks) {
    return ticks.map(function (t) {
      var d = new Date(t * 1000);
      return String(d.getHours()).padStart(2, '0') + ':' + String(d.getMinutes()).padStart(2, '0') + ':' + String(d.getSeconds()).padStart(2, '0');
    });
  }

  /** uPlot points filter: the indices of values with no neighbour to draw a line to. */
  function isolated(u, seriesIdx) {
    var d = u.data[seriesIdx];
    var out = [];
    for (var i = 0; i < d.length; i++) {
      if (d[i] !== null && d[i] !== undefined && (i === 0 || d[i - 1] === null) && (i === d.length - 1 || d[i + 1] === null)) out.push(i);
    }
    return out;
  }

  function sparkline(name, target) {
    var u = new uPlot({
      width: 160,
      height: 28,
      pxAlign: false,
      cursor: { show: false },
      select: { show: false },
      legend: { show: false },
      scales: { x: { time: false }, y: { range: fromZero } },
      axes: [{ show: false }, { show: false }],
      series: [{}, { stroke: '#1a7f37', width: 1, fill: 'rgba(26,127,55,0.12)', points: { show: false } }, { stroke: '#cf222e', width: 1, points: { show: false } }],
    }, [[], [], []], target);
    charts[name] = u;
    return u;
  }

  window.addEventListener('resize', function () {
    ['req', 'lat', 'err'].forEach(function (n) {
      var u = charts[n];
      if (u && u.root.parentNode && u.root.parentNode.parentNode) {
        u.setSize({ width: Math.max(200, u.root.parentNode.parentNode.clientWidth - 16), height: 190 });
      }
    });
  });

  // ---- overview ---------------------------------------------------------------------------------

  function isExpanded(name, totalBackends) {
    if (filterEl.value.trim() !== '') return true;
    var choice = expanded.get(name);
    if (choice !== undefined) return choice;
    // Large fleets start collapsed so every service's summary fits on one screen.
    return totalBackends <= 120;
  }
  function matches(q, svc, b) {
    if (q === '') return true;
    var hay = [svc.name, b.id, b.url, b.state, b.source, b.zone || '', b.reason || ''].join(' ').toLowerCase();
    return hay.indexOf(q) !== -1;
  }

  function createSection(name) {
    var s = { name: name, root: el('section', 'svc'), rows: new Map() };
    s.root.setAttribute('data-service', name);
    s.head = el('div', 'svc-head');
    s.caret = el('button', 'caret');
    s.caret.type = 'button';
    s.caret.setAttribute('aria-label', 'expand or collapse ' + name);
    s.title = el('a', 'svc-link', name);
    s.title.href = serviceHref(name);
    s.balancer = el('span', 'muted');
    s.panic = el('span', 'badge panic', 'PANIC');
    s.queue = el('span', 'badge queue', 'QUEUE');
    s.bar = el('span', 'bar');
    s.segs = {};
    STATES.forEach(function (st) { var seg = el('span', 'bg-' + st); s.segs[st] = seg; s.bar.appendChild(seg); });
    s.sparkEl = el('span', 'spark');
    s.counts = el('span', 'counts muted');
    s.rate = el('span', 'rate');
    [s.caret, s.title, s.balancer, s.panic, s.queue, s.bar, s.sparkEl, s.counts, s.rate].forEach(function (c) { s.head.appendChild(c); });
    var toggle = function () {
      expanded.set(name, !isExpanded(name, s.lastTotal || 0));
      render();
    };
    s.caret.addEventListener('click', toggle);
    s.head.addEventListener('click', function (ev) { if (ev.target === s.head || ev.target === s.counts) toggle(); });
    s.table = el('table');
    var colgroup = el('colgroup');
    // id and URL get room for an address and port (`http://10.0.12.143:8080`); the reason the rest, wrapped
    ['12%', '18%', '62px', '88px', '32px', '64px', '52px', '48px', '78px', '72px', '', '70px'].forEach(function (w) {
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

  function drainButton(service, id, getView) {
    var b = el('button');
    b.type = 'button';
    b.addEventListener('click', function () { toggleDrain(service, id, b, getView()); });
    return b;
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
    r.reason = el('td', 'muted wrap');
    var act = el('td');
    r.button = drainButton(s.name, id, function () { return r.view; });
    act.appendChild(r.button);
    [r.id, r.url, r.source, r.state, r.weight, r.inflight, r.rps, r.eps, r.requests, r.changed, r.reason, act]
      .forEach(function (c) { r.tr.appendChild(c); });
    return r;
  }

  function applyState(stateEl, button, state) {
    setText(stateEl, state);
    stateEl.className = 'st st-' + state;
    stateEl.setAttribute('data-state', state);
    setText(button, state === 'draining' ? 'undrain' : 'drain');
  }

  function updateRow(r, svc, b, now) {
    r.view = b;
    setText(r.url, b.url);
    r.url.title = b.url;
    setText(r.source, b.zone ? b.source + ' / ' + b.zone : b.source);
    applyState(r.state, r.button, b.state);
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

  function renderOverview(now) {
    var q = filterEl.value.trim().toLowerCase();
    var services = last.services;
    var totalBackends = 0;
    services.forEach(function (svc) { totalBackends += svc.backends.length; });
    var wanted = new Set();
    var shown = 0;
    var prevNode = null;
    services.forEach(function (svc) {
      wanted.add(svc.name);
      var s = sections.get(svc.name);
      if (!s) { s = createSection(svc.name); sections.set(svc.name, s); }
      s.lastTotal = totalBackends;
      var nameHit = q === '' || svc.name.toLowerCase().indexOf(q) !== -1;
      var counts = { healthy: 0, unhealthy: 0, ejected: 0, draining: 0, unknown: 0 };
      var visible = 0;
      var wantedRows = new Set();
      var prevRow = null;
      var open = isExpanded(svc.name, totalBackends);
      svc.backends.forEach(function (b) {
        counts[b.state] = (counts[b.state] || 0) + 1;
        if (!nameHit && !matches(q, svc, b)) return;
        visible++;
        if (!open) return;
        wantedRows.add(b.id);
        var r = s.rows.get(b.id);
        if (!r) { r = createRow(s, b.id); s.rows.set(b.id, r); }
        updateRow(r, svc, b, now);
        var expectedNext = prevRow ? prevRow.tr.nextSibling : s.tbody.firstChild;
        if (expectedNext !== r.tr) s.tbody.insertBefore(r.tr, expectedNext);
        prevRow = r;
      });
      s.rows.forEach(function (r, id) { if (!wantedRows.has(id)) { r.tr.remove(); s.rows.delete(id); } });
      var n = svc.backends.length;
      setText(s.caret, open ? '\u25BE' : '\u25B8');
      s.caret.setAttribute('aria-expanded', String(open));
      s.table.style.display = open && visible > 0 ? '' : 'none';
      setText(s.balancer, svc.config_source === 'etcd' ? svc.balancer + ' \u00B7 etcd' : svc.balancer);
      s.panic.style.display = svc.panic ? '' : 'none';
      s.queue.style.display = svc.queue_depth > 0 ? '' : 'none';
      if (svc.queue_depth > 0) s.queue.textContent = 'QUEUE ' + svc.queue_depth;
      STATES.forEach(function (st) { s.segs[st].style.width = n ? (100 * (counts[st] || 0) / n) + '%' : '0'; });
      var parts = [n + (n === 1 ? ' backend' : ' backends')];
      STATES.forEach(function (st) { if (counts[st]) parts.push(counts[st] + ' ' + st); });
      setText(s.counts, parts.join(' \u00B7 '));
      var fig = recent(seriesCache.get(seriesKey(svc.name)), now / 1000);
      setText(s.rate, fmtRate(fig.req) + ' req/s \u00B7 ' + fmtRate(fig.err) + ' 5xx/s \u00B7 p99 ' + (fig.p99 === null ? '-' : fmtMs(fig.p99) + ' ms'));
      s.rate.className = fig.err > 0 ? 'rate err' : 'rate';
      var show = q === '' || visible > 0;
      s.root.style.display = show ? '' : 'none';
      if (show) shown++;
      var expectedNext = prevNode ? prevNode.nextSibling : servicesEl.firstChild;
      if (expectedNext !== s.root) servicesEl.insertBefore(s.root, expectedNext);
      prevNode = s.root;
      if (!s.spark && show) s.spark = sparkline('spark:' + svc.name, s.sparkEl);
    });
    sections.forEach(function (s, name) {
      if (!wanted.has(name)) {
        if (s.spark) { s.spark.destroy(); delete charts['spark:' + name]; }
        s.root.remove();
        sections.delete(name);
      }
    });
    emptyEl.style.display = shown === 0 ? '' : 'none';
    setText(emptyEl, services.length === 0 ? 'No services configured.' : 'No backend matches the filter.');
    renderEventList(last.events || [], q);
  }

  function updateSparklines() {
    sections.forEach(function (s, name) {
      var ser = seriesCache.get(seriesKey(name));
      if (!s.spark || !ser) return;
      var from = Math.max(0, ser.t.length - SPARK);
      var xs = ser.t.slice(from), ok = [], bad = [];
      for (var i = from; i < ser.t.length; i++) { ok.push(total(ser, i)); bad.push(ser.req['5xx'][i] || 0); }
      s.spark.setData([xs, ok, bad]);
    });
  }

  function renderEventList(events, q) {
    var k = q + '|' + events.length + '|' + (events.length ? JSON.stringify(events[events.length - 1]) : '');
    if (k === lastEventsKey) return;
    lastEventsKey = k;
    var items = [];
    for (var i = events.length - 1; i >= 0 && items.length < 200; i--) {
      var e = events[i];
      if (q !== '' && eventText(e).indexOf(q) === -1) continue;
      var li = el('li');
      var d = new Date(e.at);
      li.appendChild(el('span', 'ev-time', isNaN(d.getTime()) ? e.at : d.toLocaleTimeString()));
      appendChange(li, e);
      li.title = e.at;
      items.push(li);
    }
    if (items.length === 0) items.push(el('li', 'muted', 'No events yet.'));
    eventsEl.replaceChildren.apply(eventsEl, items);
  }

  function eventText(e) {
    return [e.kind || 'health', e.service, e.backend, e.from, e.to, e.reason].join(' ').toLowerCase();
  }

  function appendChange(parent, e) {
    var kind = e.kind || 'health';
    if (kind === 'reload') {
      parent.appendChild(el('span', 'st', 'config reload ' + e.to));
    } else {
      parent.appendChild(el('span', 'mono', e.service + '/' + e.backend + ' '));
      if (kind === 'registry') {
        parent.appendChild(el('span', 'st', e.to));
      } else {
        parent.appendChild(el('span', 'st st-' + e.from, e.from));
        parent.appendChild(document.createTextNode(' \u2192 '));
        parent.appendChild(el('span', 'st st-' + e.to, e.to));
      }
    }
    if (e.reason) parent.appendChild(el('span', 'muted', ' ' + e.reason));
  }

  // ---- service view ---------------------------------------------------------------------------

  var svcView = { rows: new Map(), checks: new Map(), name: null };

  function serviceViewReset() {
    if (svcView.name !== route.service) {
      svcView.rows.forEach(function (r) { r.tr.remove(); });
      svcView.rows = new Map();
      svcView.checks = new Map();
      svcView.name = route.service;
    }
    if (!charts.req) {
      makeChart('req', $('chart-req'), CLASSES.map(function (c) { return line(c, CLASS_COLORS[c]); }));
      // A second with traffic between quiet ones has no line to draw: it gets a point.
      var lonely = { show: true, size: 5, filter: isolated };
      // log scale: a p99 far above the p50 leaves the p50 readable (not a line on the floor)
      makeChart('lat', $('chart-lat'), [line('p50', '#0969da', { points: lonely }), line('p99', '#8250df', { points: lonely })], { distr: 3, log: 10, range: wholeDecades });
      makeChart('err', $('chart-err'), KINDS.map(function (k) { return line(k, KIND_COLORS[k]); }));
    } else {
      ['req', 'lat', 'err'].forEach(function (n) { charts[n].setData(charts[n].data.map(function () { return []; })); });
    }
    svcView.drawnKey = null;
  }

  function drawServiceCharts() {
    var key = seriesKey(route.service, route.backend);
    var s = seriesCache.get(key);
    $('svc-nodata').hidden = !!(s && s.t.length);
    if (!s) return;
    var xs = s.t.slice();
    charts.req.setData([xs].concat(CLASSES.map(function (c) { return s.req[c].slice(); })));
    charts.lat.setData([xs, s.p50.slice(), s.p99.slice()]);
    charts.err.setData([xs].concat(KINDS.map(function (k) { return s.err[k].slice(); })));
    ['req', 'lat', 'err'].forEach(function (n) { if (charts[n].cursor.left < 0) showNewest(charts[n]); });
    svcView.drawnKey = key;
  }

  function renderService(now) {
    var svc = findService(route.service);
    setText($('svc-title'), route.service);
    var scope = $('svc-scope'), reset = $('svc-scope-reset');
    if (route.backend !== undefined) {
      setText(scope, 'charts of backend ' + route.backend);
      reset.hidden = false;
      reset.href = serviceHref(route.service);
    } else {
      setText(scope, 'charts of the whole service');
      reset.hidden = true;
    }
    if (!svc) {
      setText($('svc-balancer'), 'unknown service');
      $('svc-panic').hidden = true;
      return;
    }
    // the balancer, and where the service's settings came from (file, etcd @revision, or registry defaults)
    var cfgSrc = svc.config_source || 'file';
    var cfgRev = cfgSrc === 'etcd' && last.config && last.config.etcd ? ' @' + last.config.etcd.revision : '';
    setText($('svc-balancer'), svc.balancer + ' \u00B7 settings: ' + cfgSrc + cfgRev);
    $('svc-panic').hidden = !svc.panic;
    var tbody = document.querySelector('#svc-backends tbody');
    var seen = new Set();
    var prev = null;
    svc.backends.forEach(function (b) {
      seen.add(b.id);
      var r = svcView.rows.get(b.id);
      if (!r) { r = serviceRow(svc.name, b.id); svcView.rows.set(b.id, r); }
      fillServiceRow(r, svc.name, b, now);
      var expectedNext = prev ? prev.tr.nextSibling : tbody.firstChild;
      if (expectedNext !== r.tr) tbody.insertBefore(r.tr, expectedNext);
      prev = r;
    });
    svcView.rows.forEach(function (r, id) { if (!seen.has(id)) { r.tr.remove(); svcView.rows.delete(id); } });
  }

  function serviceRow(service, id) {
    var r = { tr: el('tr'), cells: {} };
    r.tr.setAttribute('data-backend', id);
    var idCell = el('td', 'mono');
    r.link = el('a', '', id);
    r.link.href = serviceHref(service, id);
    idCell.appendChild(r.link);
    idCell.title = id;
    r.tr.appendChild(idCell);
    ['url', 'source', 'state', 'weight', 'inflight', 'rps', 'p99', 'ewma', 'checks', 'changed', 'reason'].forEach(function (name) {
      var c = el('td', name === 'url' ? 'mono' : ['weight', 'inflight', 'rps', 'p99', 'ewma'].indexOf(name) !== -1 ? 'num' : name === 'state' ? 'st' : 'muted');
      c.setAttribute('data-col', name);
      r.cells[name] = c;
      r.tr.appendChild(c);
    });
    var act = el('td');
    r.button = drainButton(service, id, function () { return r.view; });
    act.appendChild(r.button);
    r.tr.appendChild(act);
    return r;
  }

  function fillServiceRow(r, service, b, now) {
    r.view = b;
    r.tr.classList.toggle('selected', route.backend === b.id);
    var c = r.cells;
    setText(c.url, b.url);
    setText(c.source, b.zone ? b.source + ' / ' + b.zone : b.source);
    applyState(c.state, r.button, b.state);
    var ew = b.effective_weight;
    if (ew !== undefined && ew < b.weight) {
      c.weight.replaceChildren(document.createTextNode(String(b.weight)), el('span', 'ramp', 'ramp ' + Math.round(100 * ew / b.weight) + '%'));
      c.weight.title = 'slow start: effective weight ' + ew.toFixed(2) + ' of ' + b.weight;
    } else {
      setText(c.weight, String(b.weight));
      c.weight.title = '';
    }
    setText(c.inflight, String(b.inflight) + (b.max_conns ? ' / ' + b.max_conns : ''));
    var s = seriesCache.get(seriesKey(service, b.id));
    var n = s && s.t.length ? total(s, s.t.length - 1) : 0;
    setText(c.rps, fmtRate(n));
    setText(c.p99, fmtMs(s ? lastValue(s.p99.slice(-5)) : null));
    setText(c.ewma, b.latency_ewma_ms !== undefined && b.latency_ewma_ms !== null ? fmtMs(b.latency_ewma_ms) : '-');
    var checks = svcView.checks.get(b.id) || (b.last_check ? [b.last_check] : []);
    var key = JSON.stringify(checks);
    if (c.checks.getAttribute('data-key') !== key) {
      c.checks.setAttribute('data-key', key);
      var box = el('span', 'checks');
      checks.forEach(function (k) {
        var i = el('i', k.ok ? 'ok' : 'fail');
        i.title = new Date(k.at).toLocaleTimeString() + ' ' + (k.ok ? 'pass' : 'fail') + ': ' + k.detail;
        box.appendChild(i);
      });
      var lastCheck = checks[checks.length - 1];
      c.checks.replaceChildren(box, document.createTextNode(lastCheck ? ' ' + lastCheck.detail : '-'));
    }
    setText(c.changed, ago(b.last_change, now));
    c.changed.title = b.last_change || '';
    setText(c.reason, b.reason || '');
    c.reason.title = b.reason || '';
  }

  // ---- routes view ------------------------------------------------------------------------------

  var routeRates = { t: 0, hits: [], perSec: [] };

  function renderRoutes(routes) {
    var tbody = document.querySelector('#routes tbody');
    $('routes-empty').hidden = routes.length > 0;
    var t = performance.now();
    var dt = (t - routeRates.t) / 1000;
    var perSec = routes.map(function (r, i) {
      var before = routeRates.hits[i];
      if (before === undefined || dt <= 0 || r.hits < before) return routeRates.perSec[i] || 0;
      return (r.hits - before) / dt;
    });
    routeRates = { t: t, hits: routes.map(function (r) { return r.hits; }), perSec: perSec };
    var rows = routes.map(function (r, i) {
      var tr = el('tr');
      tr.setAttribute('data-route', String(r.index));
      var m = r.match || {};
      var headers = m.headers ? Object.keys(m.headers).map(function (k) { return k + ': ' + m.headers[k]; }).join(', ') : '';
      var path = m.path !== undefined ? '= ' + m.path : m.path_prefix !== undefined ? m.path_prefix + '*' : '*';
      tr.appendChild(el('td', 'num', String(r.index)));
      tr.appendChild(el('td', 'mono', m.host || '*'));
      tr.appendChild(el('td', 'mono', path));
      tr.appendChild(el('td', 'mono', m.method || '*'));
      var hc = el('td', 'mono', headers);
      hc.setAttribute('data-col', 'headers');
      tr.appendChild(hc);
      var sc = el('td');
      var a = el('a', '', r.service);
      a.href = serviceHref(r.service);
      sc.appendChild(a);
      tr.appendChild(sc);
      tr.appendChild(el('td', 'mono', r.strip_prefix || ''));
      var hits = el('td', 'num', String(r.hits));
      hits.setAttribute('data-col', 'hits');
      tr.appendChild(hits);
      tr.appendChild(el('td', 'num', fmtRate(perSec[i])));
      // where the route came from: the local file, or the shared config in etcd (with the revision
      // in force, which comes with the stream: see routeSources)
      var src = el('td', 'muted', '');
      src.setAttribute('data-col', 'source');
      src.setAttribute('data-source', r.source || 'file');
      tr.appendChild(src);
      return tr;
    });
    tbody.replaceChildren.apply(tbody, rows);
    routeSources();
  }

  /**
   * Fills the routes' source cells: `file`, or `etcd @<revision>` with the revision the stream
   * last reported. Called when the routes arrive and on every stream message, so a table fetched
   * before the stream's first message gets its revision too.
   */
  function routeSources() {
    var rev = last && last.config && last.config.etcd ? ' @' + last.config.etcd.revision : '';
    document.querySelectorAll('#routes tbody td[data-col="source"]').forEach(function (td) {
      var source = td.getAttribute('data-source');
      setText(td, source === 'etcd' ? 'etcd' + rev : source);
    });
  }

  // ---- events view ------------------------------------------------------------------------------

  function renderEventsView() {
    var q = $('ev-filter').value.trim().toLowerCase();
    var kinds = [];
    document.querySelectorAll('#view-events input[data-kind]').forEach(function (c) { if (c.checked) kinds.push(c.getAttribute('data-kind')); });
    var events = (last && last.events) || [];
    var rows = [];
    for (var i = events.length - 1; i >= 0; i--) {
      var e = events[i];
      var kind = e.kind || 'health';
      if (kinds.indexOf(kind) === -1) continue;
      if (q !== '' && eventText(e).indexOf(q) === -1) continue;
      var tr = el('tr');
      tr.setAttribute('data-kind', kind);
      var d = new Date(e.at);
      var time = el('td', 'muted', isNaN(d.getTime()) ? e.at : d.toLocaleString());
      time.title = e.at;
      tr.appendChild(time);
      var kc = el('td');
      kc.appendChild(el('span', 'kind kind-' + kind, kind));
      tr.appendChild(kc);
      var who = el('td', 'mono');
      if (e.service) {
        var a = el('a', '', e.service + (e.backend ? '/' + e.backend : ''));
        a.href = serviceHref(e.service);
        who.appendChild(a);
      }
      tr.appendChild(who);
      var change = el('td');
      if (kind === 'health') {
        change.appendChild(el('span', 'st st-' + e.from, e.from));
        change.appendChild(document.createTextNode(' \u2192 '));
        change.appendChild(el('span', 'st st-' + e.to, e.to));
      } else {
        change.appendChild(el('span', 'st', kind === 'reload' ? 'reload ' + e.to : e.to));
      }
      tr.appendChild(change);
      var rc = el('td', 'muted', e.reason || '');
      rc.setAttribute('data-col', 'reason');
      tr.appendChild(rc);
      rows.push(tr);
    }
    if (rows.length === 0) {
      var none = el('tr');
      var td = el('td', 'muted', 'No event matches.');
      td.colSpan = 5;
      none.appendChild(td);
      rows.push(none);
    }
    var tbody = document.querySelector('#event-table tbody');
    tbody.replaceChildren.apply(tbody, rows);
  }

  function eventsToUrl() {
    var q = $('ev-filter').value.trim();
    var kinds = [];
    var all = true;
    document.querySelectorAll('#view-events input[data-kind]').forEach(function (c) {
      if (c.checked) kinds.push(c.getAttribute('data-kind')); else all = false;
    });
    var p = new URLSearchParams();
    if (q) p.set('q', q);
    if (!all) p.set('kind', kinds.join(','));
    var s = p.toString();
    history.replaceState(null, '', '#/events' + (s ? '?' + s : ''));
    renderEventsView();
  }

  // ---- render, polling ---------------------------------------------------------------------

  /** Header: where the config in force came from (the file; the shared config in etcd and its revision). */
  function renderConfigSources(c) {
    if (!c) { setText(configEl, ''); return; }
    var text = 'config: file (' + c.routes.file + ' routes)';
    if (c.etcd) text += ' + etcd ' + c.etcd.prefix + ' @ revision ' + c.etcd.revision + ' (' + c.routes.etcd + ' routes)';
    setText(configEl, text);
  }

  function render() {
    if (!last) return;
    var now = Date.now();
    var services = last.services;
    var n = 0, healthy = 0, sum = 0;
    services.forEach(function (svc) {
      n += svc.backends.length;
      svc.backends.forEach(function (b) { if (b.state === 'healthy') healthy++; });
      sum += recent(seriesCache.get(seriesKey(svc.name)), now / 1000).req;
    });
    setText(totalsEl, services.length + ' services \u00B7 ' + n + ' backends \u00B7 ' + healthy + ' healthy \u00B7 ' + fmtRate(sum) + ' req/s');
    renderConfigSources(last.config);
    if (route.view === 'overview') renderOverview(now);
    else if (route.view === 'service') renderService(now);
    else if (route.view === 'events') renderEventsView();
    else if (route.view === 'routes') routeSources();
  }

  var polling = false;
  var pollTimer = 0;

  /** Fetches what the current view draws besides the stream: series, checks, routes. */
  function poll() {
    if (polling) return Promise.resolve();
    polling = true;
    // every service's own series, in every view: the header's req/s is their sum
    var jobs = [fetchSeries('').then(function () { if (route.view === 'overview') updateSparklines(); })];
    if (route.view === 'service') {
      var svcQ = 'service=' + encodeURIComponent(route.service);
      jobs.push(fetchSeries(svcQ));
      jobs.push(fetchSeries(svcQ + '&backend=*'));
      jobs.push(getJson('/api/services/' + encodeURIComponent(route.service) + '/checks').then(function (data) {
        if (!data) return;
        data.backends.forEach(function (b) { svcView.checks.set(b.id, b.checks); });
      }));
    } else if (route.view === 'routes') {
      jobs.push(getJson('/api/routes').then(function (data) { renderRoutes(data ? data.routes : []); }));
    }
    return Promise.all(jobs).then(function () {
      if (route.view === 'service') drawServiceCharts();
      render();
    }).catch(function (err) {
      toast('could not load data: ' + (err && err.message ? err.message : String(err)));
    }).then(function () { polling = false; });
  }

  function pollNow() {
    clearTimeout(pollTimer);
    var loop = function () {
      poll().then(function () { pollTimer = setTimeout(loop, SERIES_POLL_MS); });
    };
    loop();
  }

  // ---- drain / undrain -------------------------------------------------------------------------

  function post(url, token) {
    var headers = {};
    if (token) headers.authorization = 'Bearer ' + token;
    return fetch(url, { method: 'POST', headers: headers, cache: 'no-store' });
  }

  async function toggleDrain(service, id, button, view) {
    var action = view && view.state === 'draining' ? 'undrain' : 'drain';
    var url = '/api/services/' + encodeURIComponent(service) + '/backends/' + encodeURIComponent(id) + '/' + action;
    button.disabled = true;
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
      var fresh = await res.json();
      // Show the new state now; the next push confirms it.
      var svc = findService(service);
      if (svc) {
        var i = svc.backends.findIndex(function (b) { return b.id === id; });
        if (i !== -1) svc.backends[i] = fresh;
      }
      render();
    } catch (err) {
      toast(action + ' ' + service + '/' + id + ' failed: ' + (err && err.message ? err.message : String(err)));
    } finally {
      button.disabled = false;
    }
  }

  // ---- start -------------------------------------------------------------------------------

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

  // the overview's filter is part of its URL (#/?q=TEXT), so a filtered view can be shared
  filterEl.addEventListener('input', function () {
    var q = filterEl.value.trim();
    history.replaceState(null, '', '#/' + (q ? '?' + new URLSearchParams({ q: q }).toString() : ''));
    render();
  });
  $('expand').addEventListener('click', function () {
    sections.forEach(function (_s, name) { expanded.set(name, true); }); render();
  });
  $('collapse').addEventListener('click', function () {
    sections.forEach(function (_s, name) { expanded.set(name, false); }); render();
  });
  $('ev-filter').addEventListener('input', eventsToUrl);
  document.querySelectorAll('#view-events input[data-kind]').forEach(function (c) { c.addEventListener('change', eventsToUrl); });
  window.addEventListener('hashchange', onRoute);
  // Keeps "12s ago" moving between pushes.
  setInterval(render, 5000);
  onRoute();
  connect();
})();
