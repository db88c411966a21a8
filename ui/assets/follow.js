// Follows a running deploy's log: the server renders every row; this only appends them.
(function () {
  "use strict";
  var log = document.getElementById("log");
  if (!log || !log.dataset.events) { return; }
  var steps = document.getElementById("steps");
  var status = document.getElementById("status");
  var live = document.getElementById("live");
  var es = new EventSource(log.dataset.events);
  function badge(s) {
    var b = document.createElement("span");
    b.className = "badge s-" + s;
    b.textContent = s;
    status.replaceChildren(b);
  }
  function atBottom() {
    return window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
  }
  es.addEventListener("line", function (e) {
    var follow = atBottom();
    log.insertAdjacentHTML("beforeend", e.data);
    if (follow) { window.scrollTo(0, document.body.scrollHeight); }
  });
  es.addEventListener("step", function (e) { steps.insertAdjacentHTML("beforeend", e.data); });
  es.addEventListener("status", function (e) { badge(e.data); });
  es.addEventListener("end", function (e) {
    es.close();
    var d = JSON.parse(e.data);
    badge(d.status);
    live.hidden = true;
    if (d.error) {
      var pre = document.getElementById("error");
      pre.textContent = d.error;
      pre.hidden = false;
    }
    document.body.dataset.final = d.status;
  });
  es.addEventListener("gone", function () { live.textContent = "agent stopping: reload later"; });
}());
