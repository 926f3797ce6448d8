(function () {
  "use strict";
  var root = document.querySelector(".ikr");
  if (!root) return;
  var box = root.querySelector("input.filter");
  var shown = root.querySelector(".toolbar .shown");
  var rows = Array.prototype.slice.call(root.querySelectorAll("[data-row]"));
  function textOf(el) {  // what a row is found by: its text and the full values behind shortened ones
    var titles = Array.prototype.map.call(el.querySelectorAll("[title]"), function (t) { return t.title; });
    return (el.textContent + " " + titles.join(" ") + " " + (el.getAttribute("data-id") || "") + " " +
            (el.getAttribute("data-tag") || "")).toLowerCase();
  }
  var texts = rows.map(textOf);
  function apply() {
    var q = box ? box.value.trim().toLowerCase() : "";
    var n = 0;
    rows.forEach(function (row, i) {
      var hit = !q || texts[i].indexOf(q) !== -1;
      row.hidden = !hit;
      if (hit) n += 1;
    });
    root.querySelectorAll("details.section").forEach(function (d) {
      var all = d.querySelectorAll("[data-row]").length;
      var vis = d.querySelectorAll("[data-row]:not([hidden])").length;
      var c = d.querySelector("summary .count");
      if (c && all) c.textContent = q ? "(" + vis + " of " + all + " match)" : "(" + all + ")";
      if (q && vis) d.open = true;
    });
    if (shown) shown.textContent = q ? n + " of " + rows.length + " rows match" : rows.length + " rows";
  }
  if (box) { box.addEventListener("input", apply); apply(); }
  function setAll(open) { root.querySelectorAll("details").forEach(function (d) { d.open = open; }); }
  root.querySelectorAll("button[data-open]").forEach(function (b) {
    b.addEventListener("click", function () { setAll(b.getAttribute("data-open") === "1"); });
  });
  function key(row, idx, numeric) {
    var tr = row.tagName === "TBODY" ? row.rows[0] : row;
    var cell = tr && tr.cells[idx];
    var v = cell ? (cell.getAttribute("data-v") !== null ? cell.getAttribute("data-v") : cell.textContent.trim()) : "";
    if (!numeric) return v.toLowerCase();
    var f = parseFloat(v);
    return isNaN(f) ? -Infinity : f;
  }
  root.querySelectorAll("table.sortable thead th[data-sort]").forEach(function (th) {
    var b = th.querySelector("button");
    (b || th).addEventListener("click", function () {
      var table = th.closest("table");
      var idx = Array.prototype.indexOf.call(th.parentNode.children, th);
      var numeric = th.getAttribute("data-sort") === "num";
      var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
      table.querySelectorAll("thead th[aria-sort]").forEach(function (o) { o.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
      var grouped = table.classList.contains("grouped");
      var items = grouped ? Array.prototype.slice.call(table.tBodies)
                          : Array.prototype.slice.call(table.tBodies[0].rows);
      var keyed = items.map(function (el, i) { return [key(el, idx, numeric), i, el]; });
      keyed.sort(function (a, b) {
        if (a[0] < b[0]) return -dir;
        if (a[0] > b[0]) return dir;
        return a[1] - b[1];
      });
      var parent = grouped ? table : table.tBodies[0];
      keyed.forEach(function (k) { parent.appendChild(k[2]); });
    });
  });
})();
