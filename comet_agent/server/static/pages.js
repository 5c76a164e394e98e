/* comet-agent local server pages: package filters (the experiment page's charts are charts.js).
 * Written for comet-agent (same licence as the package); no third-party code, no network use.
 * Every value is inserted with textContent or setAttribute, never as HTML. */
(function () {
  "use strict";
  function wireFilters() {
    Array.prototype.forEach.call(document.querySelectorAll("input.filter"), function (input) {
      var list = document.getElementById(input.getAttribute("data-filter-target"));
      if (!list) return;
      input.addEventListener("input", function () {
        var needle = input.value.toLowerCase();
        Array.prototype.forEach.call(list.children, function (item) {
          item.hidden = needle !== "" && item.textContent.toLowerCase().indexOf(needle) === -1;
        });
      });
    });
  }

  function start() {
    wireFilters();
    document.body.setAttribute("data-pages-js", "ready");
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
