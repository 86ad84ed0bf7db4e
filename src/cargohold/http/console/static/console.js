// cargohold console: copy buttons and the lifecycle preview refresh. Everything works without it.
(function () {
  "use strict";
  function announce(text) {
    var status = document.getElementById("copy-status");
    if (status) { status.textContent = ""; window.setTimeout(function () { status.textContent = text; }, 50); }
  }
  function fallbackCopy(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "visually-offscreen";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    document.body.removeChild(area);
    return ok;
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-copy-target]");
    if (!button) { return; }
    var source = document.getElementById(button.getAttribute("data-copy-target"));
    if (!source) { return; }
    var text = source.textContent.trim();
    var label = button.getAttribute("data-copy-label") || "Command";
    var done = function () { announce(label + " copied to the clipboard."); button.textContent = "Copied"; 
      window.setTimeout(function () { button.textContent = "Copy"; }, 2000); };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () {
        if (fallbackCopy(text)) { done(); } else { announce("Copying failed: select the text and copy it."); }
      });
    } else if (fallbackCopy(text)) { done(); } else { announce("Copying failed: select the text and copy it."); }
  });
  // A preview still running: look again every two seconds (the page also has a Refresh link).
  var pending = document.querySelector("[data-refresh-seconds]");
  if (pending) {
    var seconds = parseInt(pending.getAttribute("data-refresh-seconds"), 10) || 2;
    window.setTimeout(function () { window.location.reload(); }, seconds * 1000);
  }
  // A table wider than the screen scrolls: make that region reachable (and named) for keyboards.
  Array.prototype.forEach.call(document.querySelectorAll(".table-wrap"), function (wrap) {
    if (wrap.scrollWidth > wrap.clientWidth + 1) {
      var table = wrap.querySelector("table");
      var labelledby = table && table.getAttribute("aria-labelledby");
      var caption = table && table.querySelector("caption");
      wrap.setAttribute("tabindex", "0");
      wrap.setAttribute("role", "region");
      if (labelledby) { wrap.setAttribute("aria-labelledby", labelledby); }
      else { wrap.setAttribute("aria-label", caption ? caption.textContent.trim() : "Table"); }
    }
  });
  // Copy buttons are only shown when this script runs.
  Array.prototype.forEach.call(document.querySelectorAll("button[data-copy-target][hidden]"), function (b) {
    b.hidden = false;
  });
})();
