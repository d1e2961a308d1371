"use strict";
// Prices the quick sale's lines as they are typed: the form as it stands goes to
// GET /sales/price, which prices it exactly as "Check" does; the answer fills each line's item,
// stock, price, total and problems, and the running total. Without this script, "Check" does it.
(function () {
  var form = document.querySelector("form.sale");
  if (!form || !window.fetch || !window.URLSearchParams) {
    return;
  }
  var timer = 0;
  var asked = 0;
  function show(id, text) {
    var element = document.getElementById(id);
    if (element) {
      element.textContent = text;
    }
  }
  function problem(field, text) {
    var element = document.getElementById(field + "-error");
    var input = document.getElementById(field);
    if (element) {
      element.textContent = text || "";
      element.hidden = !text;
    }
    if (input && text) {
      input.setAttribute("aria-invalid", "true");
    } else if (input) {
      input.removeAttribute("aria-invalid");
    }
  }
  function price() {
    var query = new URLSearchParams(new FormData(form));
    query.delete("action");
    asked += 1;
    var mine = asked;
    fetch("/sales/price?" + query.toString(), {
      credentials: "same-origin",
      headers: { Accept: "application/json" }
    })
      .then(function (response) {
        return response.ok ? response.json() : null;
      })
      .then(function (pricing) {
        if (!pricing || mine !== asked) {
          return;
        }
        var lines = {};
        pricing.lines.forEach(function (line) {
          lines[line.index] = line;
        });
        var count = form.querySelectorAll("tbody tr").length;
        for (var index = 0; index < count; index += 1) {
          var line = lines[index] || { name: "", stock: "", price: "", line_total: "" };
          show("found-" + index, line.name);
          show("stock-" + index, line.stock);
          show("price-" + index, line.price);
          show("line-total-" + index, line.line_total);
          problem("item_" + index, pricing.problems["item_" + index]);
          problem("quantity_" + index, pricing.problems["quantity_" + index]);
        }
        show("total", pricing.total);
      })
      .catch(function () {});
  }
  function soon() {
    clearTimeout(timer);
    timer = setTimeout(price, 250);
  }
  // "input" as each key is typed; "change" for what fires no input (a field emptied at once).
  form.addEventListener("input", soon);
  form.addEventListener("change", soon);
}());
