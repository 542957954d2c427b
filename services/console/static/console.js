// Minqing console: small progressive enhancements. Every page works without this file.
(function () {
  "use strict";
  // The place pickers: a village list shows only the chosen township's villages, a hamlet list
  // only the chosen village's hamlets (without JS, the grouped lists show every place).
  function narrow(child) {
    var parent = document.getElementById(child.getAttribute("data-parent"));
    if (!parent) { return; }
    function apply() {
      var groups = child.querySelectorAll("optgroup"), keep = false;
      for (var i = 0; i < groups.length; i++) {
        var show = !parent.value || groups[i].getAttribute("data-parent-value") === parent.value;
        groups[i].hidden = !show;
        groups[i].disabled = !show;
        if (show && child.value && groups[i].querySelector('option[value="' + child.value + '"]')) { keep = true; }
      }
      if (!keep) { child.value = ""; }
      child.dispatchEvent(new Event("change"));
    }
    parent.addEventListener("change", apply);
    apply();
  }
  var lists = document.querySelectorAll("select[data-parent]");
  for (var i = 0; i < lists.length; i++) { narrow(lists[i]); }
  // The receipt's print button.
  var print = document.querySelector("[data-print]");
  if (print) { print.addEventListener("click", function () { window.print(); }); }
})();
