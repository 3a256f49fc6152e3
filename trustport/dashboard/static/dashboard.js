/* trustport dashboard: the little JavaScript the pages use (no inline scripts: the CSP is default-src 'self'). */
(function () {
  "use strict";
  var MAX_LIVE_ROWS = 500;

  /* The live view polls /ui/live/rows?after=<newest id shown>: take the id from the newest row at each poll. */
  document.addEventListener("htmx:configRequest", function (evt) {
    var source = evt.detail.elt;
    if (!source || source.id !== "live-rows") { return; }
    var first = source.querySelector("tr[data-id]");
    evt.detail.parameters.after = first ? first.getAttribute("data-id") : (source.getAttribute("data-after") || "0");
    var pause = document.getElementById("live-pause");
    if (pause && pause.checked) { evt.preventDefault(); }
  });

  document.addEventListener("htmx:afterSwap", function (evt) {
    var target = evt.detail.target;
    if (!target || target.id !== "live-rows") { return; }
    var rows = target.querySelectorAll("tr[data-id]");
    for (var i = MAX_LIVE_ROWS; i < rows.length; i++) { rows[i].remove(); }
    var empty = document.getElementById("live-empty");
    if (empty && rows.length) { empty.remove(); }
    var stamp = document.getElementById("live-updated");
    if (stamp) { stamp.textContent = new Date().toISOString().slice(0, 19).replace("T", " ") + " UTC"; }
  });

  document.addEventListener("htmx:responseError", function () {
    var stamp = document.getElementById("live-updated");
    if (stamp) { stamp.textContent = "not updating (server error) — retrying"; }
  });

  document.addEventListener("htmx:sendError", function () {
    var stamp = document.getElementById("live-updated");
    if (stamp) { stamp.textContent = "not updating (server unreachable) — retrying"; }
  });

  /* Pending queue: a checkbox that selects every row for the bulk form. */
  document.addEventListener("change", function (evt) {
    var box = evt.target;
    if (!box || box.id !== "select-all") { return; }
    var boxes = document.querySelectorAll("input[type=checkbox][name=device]");
    for (var i = 0; i < boxes.length; i++) { boxes[i].checked = box.checked; }
  });

  /* Buttons with data-confirm ask first (decommission, revoke, cancel a job). */
  document.addEventListener("submit", function (evt) {
    var button = evt.submitter;
    var text = button && button.getAttribute("data-confirm");
    if (text && !window.confirm(text)) { evt.preventDefault(); }
  });
})();
