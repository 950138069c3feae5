// Client-side filter of the lost-exposure table, on the index defined by index-data.js.
// Only visibility changes: no markup is built from data (text goes in via textContent).
(function () {
  "use strict";
  var data = window.HQA_INDEX, F = data.flags;
  var rows = Array.prototype.slice.call(document.querySelectorAll("tr.exposure-row"));
  var want = {
    "": function () { return true; },
    "rejected": function (f) { return f & F.rejected; },
    "rejected-notfixed": function (f) { return (f & F.rejected) && (f & F.notfixed); },
    "remediated": function (f) { return f & F.remediated; },
    "fixed": function (f) { return f & F.fixed; },
    "notfixed": function (f) { return f & F.notfixed; },
    "keyword": function (f) { return f & F.keyword; },
    "changed": function (f) { return f & F.changed; }
  };
  function value(id) { return document.getElementById(id).value; }
  function apply() {
    var program = value("f-program"), instrument = value("f-instrument"), mode = value("f-mode");
    var outcome = want[value("f-outcome")] || want[""];
    var search = value("f-search").trim().toLowerCase();
    var shown = 0, i, r, p, ok;
    for (i = 0; i < data.rows.length; i++) {
      r = data.rows[i]; p = data.products[r[0]];
      ok = !!((!program || p[2] === program) && (!instrument || p[3] === instrument) &&
           (!mode || p[4] === mode) && outcome(r[2]) &&
           (!search || r[1].toLowerCase().indexOf(search) >= 0));
      if (rows[i].hidden === ok) { rows[i].hidden = !ok; }   // touch the DOM only on change
      if (ok) { shown++; }
    }
    // A product row shows while one of its exposures does; a program while one product does.
    var groups = document.querySelectorAll("tbody.program"), g, trs, j, any, anyProduct, product;
    for (i = 0; i < groups.length; i++) {
      g = groups[i]; trs = g.rows; anyProduct = false; product = null; any = false;
      for (j = trs.length - 1; j >= 0; j--) {
        var tr = trs[j], cls = tr.className;
        if (cls === "exposure-row") { any = any || !tr.hidden; }
        else if (cls === "product-row") { tr.hidden = !any; anyProduct = anyProduct || any; any = false; }
      }
      g.hidden = !anyProduct;
    }
    document.getElementById("shown").textContent = shown + " of " + data.rows.length + " rows";
    found(search);
  }
  // Products (lost something or not) holding an exposure whose rootname matches the search.
  function found(search) {
    var box = document.getElementById("found");
    box.textContent = "";
    if (search.length < 3) { box.hidden = true; return; }
    var hits = data.products.filter(function (p) { return p[6].toLowerCase().indexOf(search) >= 0; });
    box.hidden = false;
    box.appendChild(document.createTextNode(hits.length + " product(s) with an exposure matching \u201c" +
                                            search + "\u201d: "));
    hits.slice(0, 50).forEach(function (p) {
      var a = document.createElement("a");
      a.href = p[1]; a.textContent = p[0];
      box.appendChild(a);
    });
  }
  ["f-program", "f-instrument", "f-mode", "f-outcome"].forEach(function (id) {
    document.getElementById(id).addEventListener("change", apply);
  });
  document.getElementById("f-search").addEventListener("input", apply);
  window.hqaApplyFilters = apply;
}());
