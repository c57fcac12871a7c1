// rolloutbot web view: follows a running rollout through server-sent events,
// without a reload, and reconnects when the bot restarts. No dependencies.
(function () {
  'use strict';

  // Filters apply as soon as a choice is made; the button stays for keyboards
  // and for pages without this script.
  document.querySelectorAll('select[data-autosubmit]').forEach(function (sel) {
    sel.addEventListener('change', function () { sel.form.submit(); });
  });

  var root = document.getElementById('live');
  if (!root || !window.EventSource) return;
  var shown = root.getAttribute('data-rollout');
  var follow = root.hasAttribute('data-follow');
  var sig = root.getAttribute('data-sig');
  var status = document.getElementById('live-status');
  var es = null, wait = 1000, refreshing = false, again = false, lastRefresh = 0;

  function say(text) { if (status && status.textContent !== text) status.textContent = text; }

  function setField(name, value) {
    root.querySelectorAll('[data-field="' + name + '"]').forEach(function (el) {
      var text = value ? (el.getAttribute('data-prefix') || '') + value : '';
      if (el.textContent !== text) el.textContent = text;
      if (name === 'halt') el.hidden = !value;
    });
  }

  function apply(d) {
    if (String(d.id) !== shown) {
      if (follow) location.reload(); // a newer rollout started: show it
      return;
    }
    Object.keys(d.counts).forEach(function (k) {
      root.querySelectorAll('[data-count="' + k + '"]').forEach(function (el) { el.textContent = d.counts[k]; });
    });
    if (d.undo) Object.keys(d.undo).forEach(function (k) {
      root.querySelectorAll('[data-undo="' + k + '"]').forEach(function (el) { el.textContent = d.undo[k]; });
    });
    ['label', 'elapsed', 'eta', 'waiting', 'halt', 'done', 'total', 'percent', 'undoDone', 'undoAll'].forEach(function (k) {
      setField(k, d[k] === undefined || d[k] === null ? '' : String(d[k]));
    });
    setField('outcome', d.active ? '' : d.outcome);
    var bar = document.getElementById('progress');
    if (bar) { bar.max = d.total; bar.value = d.done; bar.textContent = d.percent + '%'; }
    var badge = root.querySelector('.phase-badge');
    if (badge) badge.className = 'phase-badge phase-' + d.phase;
    say(d.active ? 'live' : '');
    if (d.sig !== sig) { sig = d.sig; refresh(); }
  }

  // refresh reloads the page's lists and charts (the [data-refresh] parts),
  // at most every two seconds, keeping its filters, focus and scroll.
  function refresh() {
    if (refreshing) { again = true; return; }
    var delay = Math.max(0, lastRefresh + 2000 - Date.now());
    refreshing = true;
    setTimeout(function () {
      lastRefresh = Date.now();
      fetch(location.href, { credentials: 'same-origin', headers: { 'Accept': 'text/html' } })
        .then(function (res) { if (!res.ok) throw new Error(res.status); return res.text(); })
        .then(function (html) {
          var doc = new DOMParser().parseFromString(html, 'text/html');
          document.querySelectorAll('[data-refresh]').forEach(function (el) {
            var fresh = el.id && doc.getElementById(el.id);
            if (fresh && fresh.innerHTML !== el.innerHTML) el.innerHTML = fresh.innerHTML;
          });
        })
        .catch(function () {})
        .then(function () {
          refreshing = false;
          if (again) { again = false; refresh(); }
        });
    }, delay);
  }

  function connect() {
    es = new EventSource(root.getAttribute('data-live'));
    es.addEventListener('open', function () { wait = 1000; });
    es.addEventListener('progress', function (ev) {
      try { apply(JSON.parse(ev.data)); } catch (e) { /* a torn event: the next one replaces it */ }
    });
    es.addEventListener('error', function () {
      // The browser retries by itself while the server is away; when an
      // answer ended the stream (a proxy's 502 during a restart), retry here.
      say('reconnecting…');
      if (es.readyState === EventSource.CLOSED) {
        es.close();
        setTimeout(connect, wait);
        wait = Math.min(wait * 2, 30000);
      }
    });
  }
  connect();
})();
