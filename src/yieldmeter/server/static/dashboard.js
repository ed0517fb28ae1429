// yieldmeter dashboard: the only script. Applies a filter as soon as a picker changes,
// leaving empty fields out of the address.
(function () {
  "use strict";
  var form = document.getElementById("filters");
  if (!form) { return; }
  function dropEmpty() {
    var fields = form.querySelectorAll("input, select");
    for (var j = 0; j < fields.length; j++) {
      if (!fields[j].value) { fields[j].disabled = true; }
    }
  }
  form.addEventListener("submit", dropEmpty);
  var selects = form.querySelectorAll("select");
  for (var i = 0; i < selects.length; i++) {
    selects[i].addEventListener("change", function () { dropEmpty(); form.submit(); });
  }
}());
