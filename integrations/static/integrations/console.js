// Staff console: show every <time class="console-time"> in the reader's own time zone; the UTC time stays on hover.
// Clipped list cells get their full text on hover.
(function () {
  "use strict";
  function localise() {
    var format;
    try {
      // Compact (lists must fit at 1280 px): "2 Dec, 18:38:10"; the UTC time is on hover.
      format = new Intl.DateTimeFormat(undefined, {
        month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false
      });
    } catch (e) {
      return; // no Intl: the UTC text stays
    }
    var nodes = document.querySelectorAll("time.console-time[datetime]");
    for (var i = 0; i < nodes.length; i++) {
      var when = new Date(nodes[i].getAttribute("datetime"));
      if (!isNaN(when.getTime())) {
        nodes[i].textContent = format.format(when);
      }
    }
  }
  // A list cell too long for its column is clipped by console.css; its full text shows on hover.
  function titleClipped() {
    var cells = document.querySelectorAll("#result_list tbody td");
    for (var i = 0; i < cells.length; i++) {
      if (cells[i].scrollWidth > cells[i].clientWidth && !cells[i].title) {
        cells[i].title = cells[i].textContent.trim();
      }
    }
  }
  function ready() {
    localise();
    titleClipped();
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", ready);
  } else {
    ready();
  }
})();
