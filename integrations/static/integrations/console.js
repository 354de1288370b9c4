// Staff console: show every <time class="console-time"> in the reader's own time zone; the UTC time stays on hover.
(function () {
  "use strict";
  function localise() {
    var format;
    try {
      format = new Intl.DateTimeFormat(undefined, {
        year: "numeric", month: "2-digit", day: "2-digit",
        hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false, timeZoneName: "short"
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
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", localise);
  } else {
    localise();
  }
})();
