// advisor console: follows a running reindex without reloading the page (the page works without it).
(function () {
  "use strict";
  function follow(box) {
    var url = box.getAttribute("data-url");
    var text = box.querySelector(".text");
    function tick() {
      fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
        .then(function (r) { return r.json(); })
        .then(function (job) {
          box.setAttribute("data-state", job.state);
          var detail = job.files + " files, " + job.chunks + " chunks";
          if (job.state === "running") {
            text.textContent = "Reindexing… " + detail;
            setTimeout(tick, 500);
          } else {
            var bar = box.querySelector("progress");
            if (bar) { bar.remove(); }
            text.textContent = job.state === "done" ? "Done: " + detail : "Failed: " + (job.error || "");
            if (job.summary) {
              var pre = document.createElement("pre");
              pre.textContent = job.summary;
              box.appendChild(pre);
            }
          }
        })
        .catch(function () { setTimeout(tick, 2000); });
    }
    tick();
  }
  document.addEventListener("DOMContentLoaded", function () {
    var box = document.getElementById("reindex-progress");
    if (box && box.getAttribute("data-state") === "running") { follow(box); }
  });
})();
