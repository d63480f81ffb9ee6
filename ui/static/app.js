// Airlock's page script, served from /static so that the page's
// Content-Security-Policy can forbid inline script. It keeps relative
// times ticking, follows /events (server-sent events) to refresh the
// pending list or an approval's status without a reload (data-stream on
// the body says whether the stream is open), and offers browser
// notifications of new held calls.
(function () {
  'use strict';

  function duration(ms) {
    var s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return s + 's';
    var m = Math.floor(s / 60);
    if (m < 60) return m + 'm ' + String(s % 60).padStart(2, '0') + 's';
    return Math.floor(m / 60) + 'h ' + String(m % 60).padStart(2, '0') + 'm';
  }

  function tick() {
    var now = Date.now();
    document.querySelectorAll('[data-since]').forEach(function (el) {
      el.textContent = duration(now - Date.parse(el.dataset.since));
    });
    document.querySelectorAll('[data-until]').forEach(function (el) {
      var left = Date.parse(el.dataset.until) - now;
      el.textContent = left > 0 ? duration(left) : 'expired';
    });
  }

  // swap replaces the element with id by the same element in the HTML the
  // server rendered for it (templ escaped every value in it).
  function swap(url, id) {
    return fetch(url, { credentials: 'same-origin', cache: 'no-store' }).then(function (res) {
      if (!res.ok || res.redirected) {
        location.reload(); // signed out, or gone: let the server say
        return null;
      }
      return res.text();
    }).then(function (html) {
      if (html === null) return null;
      var t = document.createElement('template');
      t.innerHTML = html;
      var fresh = t.content.getElementById(id);
      var old = document.getElementById(id);
      if (fresh && old) old.replaceWith(fresh);
      tick();
      return fresh;
    });
  }

  function refreshPending() {
    swap('/pending/table', 'pending').then(function (el) {
      if (el) document.title = el.dataset.title;
    });
  }

  function refreshApproval(id) {
    swap('/approvals/' + encodeURIComponent(id) + '/status', 'status').then(function (el) {
      if (el && el.dataset.final === 'true') {
        var actions = document.getElementById('actions');
        if (actions) actions.remove();
      }
    });
  }

  function notify(ev) {
    if (!('Notification' in window) || Notification.permission !== 'granted' || !document.hidden) return;
    var n = new Notification('Airlock: a call waits for approval', {
      body: ev.tool + ' on ' + ev.server,
      tag: ev.id,
    });
    n.onclick = function () {
      window.focus();
      location.href = '/approvals/' + encodeURIComponent(ev.id);
    };
  }

  function offerNotifications() {
    var button = document.getElementById('notify');
    if (!button || !('Notification' in window) || Notification.permission !== 'default') return;
    button.hidden = false;
    button.addEventListener('click', function () {
      Notification.requestPermission().then(function () { button.hidden = true; });
    });
  }

  function follow(live, id) {
    if (!window.EventSource) return;
    var es = new EventSource('/events');
    function onEvent(e) {
      var ev = JSON.parse(e.data);
      if (live === 'pending') {
        refreshPending();
        if (e.type === 'held') notify(ev);
      } else if (ev.id === id) {
        refreshApproval(id);
      }
    }
    ['held', 'updated', 'decided'].forEach(function (t) { es.addEventListener(t, onEvent); });
    es.addEventListener('error', function () {
      document.body.dataset.stream = 'down';
      // The browser retries a dropped stream by itself; it gives up only
      // when the answer is not a stream, as when the session ended.
      if (es.readyState === EventSource.CLOSED) setTimeout(function () { location.reload(); }, 1000);
    });
    es.addEventListener('open', function () {
      document.body.dataset.stream = 'open';
      // Events between the page's rendering and this stream's start, or
      // during a reconnect, were missed.
      if (live === 'pending') refreshPending(); else refreshApproval(id);
    });
  }

  document.addEventListener('DOMContentLoaded', function () {
    tick();
    setInterval(tick, 1000);
    var live = document.body.dataset.live;
    if (live === 'pending') offerNotifications();
    if (live) follow(live, document.body.dataset.id);
  });
})();
