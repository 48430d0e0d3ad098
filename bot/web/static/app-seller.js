/* The seller's tab of the Mini App (/app): the period's figures, the revenue and method
 * charts (SVG drawn by the server in this page's theme colours, bot/charts.py), top items,
 * what is outstanding, exports of the period, and the invoice list with filters and search.
 *
 * Data from /app/api/seller/* (bot/web/app/seller.py), text only (app.el), never HTML.
 * Exports: a signed-in POST answers a short-lived signed link that Telegram's downloadFile
 * (or the browser) can open without our headers.
 */
(function () {
  "use strict";
  if (!window.PaybotApp) return;

  var state = { preset: "year", from: "", to: "" };

  function iso(d) {
    return d.getUTCFullYear() + "-" + String(d.getUTCMonth() + 1).padStart(2, "0") + "-" +
      String(d.getUTCDate()).padStart(2, "0");
  }
  // The period of a preset, as the server reads it (UTC dates, both ends included).
  function period() {
    var now = new Date();
    var y = now.getUTCFullYear(), m = now.getUTCMonth();
    if (state.preset === "month") return { from: iso(new Date(Date.UTC(y, m, 1))), to: iso(now) };
    if (state.preset === "last") {
      return { from: iso(new Date(Date.UTC(y, m - 1, 1))), to: iso(new Date(Date.UTC(y, m, 0))) };
    }
    if (state.preset === "custom") return { from: state.from, to: state.to };
    return { from: iso(new Date(Date.UTC(y, m - 11, 1))), to: iso(now) };
  }

  function amounts(list) {
    return list && list.length ? list.map(function (a) { return a.amount; }).join(" · ") : "0";
  }

  function figure(app, id, label, value, sub) {
    return app.el("div", { class: "figure", id: id }, [
      app.el("div", { class: "label", text: label }),
      app.el("div", { class: "value", text: value }),
      sub ? app.el("div", { class: "sub", text: sub }) : null,
    ]);
  }

  function card(app, title, children, id) {
    return app.el("section", { class: "card seller-card", id: id },
      [app.el("h2", { text: title })].concat(children));
  }

  function chart(app, id, info, query, emptyText, hasData) {
    var box = app.el("div", { class: "seller-chart" });
    if (!hasData) {
      box.appendChild(app.el("p", { class: "empty", text: emptyText }));
      return box;
    }
    var th = app.theme();
    var img = app.el("img", { class: "chart", id: id, alt: info.alt, width: "360" });
    box.appendChild(img);
    var path = info.url.split("?")[0];
    var q = Object.assign({}, query, { bg: th.bg, text: th.text, hint: th.hint, accent: th.accent });
    app.blob(path, q).then(function (url) { img.src = url; }, function (err) {
      img.remove();
      box.appendChild(app.el("p", { class: "empty", text: err.message }));
    });
    return box;
  }

  function periodPicker(app, rerun) {
    var select = app.el("select", { id: "seller-period", "aria-label": app.t("app_seller_period") }, [
      ["month", app.t("app_seller_period_this_month")], ["last", app.t("app_seller_period_last_month")],
      ["year", app.t("app_seller_period_12_months")], ["custom", app.t("app_seller_period_custom")],
    ].map(function (o) {
      return app.el("option", { value: o[0], text: o[1], selected: state.preset === o[0] });
    }));
    var p = period();
    var from = app.el("input", { type: "date", id: "seller-from", value: p.from, "aria-label": app.t("app_seller_from") });
    var to = app.el("input", { type: "date", id: "seller-to", value: p.to, "aria-label": app.t("app_seller_to") });
    var show = app.el("button", { type: "button", class: "btn small", text: app.t("app_seller_apply"),
      onclick: function () { state.from = from.value; state.to = to.value; rerun(); } });
    var custom = app.el("div", { class: "row filters seller-custom", hidden: state.preset !== "custom" },
      [from, app.el("span", { class: "hint", text: "–" }), to, show]);
    select.addEventListener("change", function () {
      state.preset = select.value;
      if (state.preset === "custom") {
        var cur = period();
        custom.hidden = false;
        state.from = state.from || from.value || cur.from;
        state.to = state.to || to.value || cur.to;
        return;
      }
      rerun();
    });
    return app.el("div", { class: "seller-period" }, [
      app.el("div", { class: "row filters" }, [select]), custom,
    ]);
  }

  function figures(app, d) {
    var c = d.conversion, o = d.outstanding;
    var tiles = [
      figure(app, "seller-revenue", app.t("app_seller_fig_revenue"), amounts(d.revenue),
        d.from + " – " + d.to),
      figure(app, "seller-month", app.t("app_seller_fig_month", { month: d.this_month.label }),
        amounts(d.this_month.amounts)),
      figure(app, "seller-open", app.t("app_seller_fig_open"), amounts(o.open),
        app.tn("app_seller_invoices_n", o.open_count, { n: o.open_count })),
      figure(app, "seller-overdue", app.t("app_seller_fig_overdue"), amounts(o.overdue),
        app.tn("app_seller_invoices_n", o.overdue_count, { n: o.overdue_count })),
      figure(app, "seller-conversion", app.t("app_seller_fig_conversion"),
        c.issued ? c.percent : "—",
        app.tn("app_seller_paid_of", c.issued, { paid: c.paid, issued: c.issued })),
    ];
    d.subscriptions.forEach(function (s) {
      tiles.push(figure(app, "seller-mrr-" + s.currency, app.t("app_seller_fig_mrr"), s.mrr.amount,
        app.tn("app_seller_active_n", s.active, { n: s.active })));
      tiles.push(figure(app, "seller-churn-" + s.currency, app.t("app_seller_fig_churn"),
        s.churn_percent, app.tn("app_seller_churned_n", s.churned, { n: s.churned })));
    });
    if (tiles.length % 2) tiles[0].classList.add("wide");
    return app.el("div", { class: "figures", id: "seller-figures" }, tiles);
  }

  function topItems(app, d) {
    if (!d.top_items.length) return [app.el("p", { class: "empty", text: app.t("app_seller_empty_top") })];
    return [app.el("ul", { class: "list", id: "seller-top" }, d.top_items.map(function (i) {
      return app.el("li", {}, [
        app.el("div", { class: "main" }, [
          app.el("div", { class: "title", text: i.item }),
          app.el("div", { class: "hint", text: app.tn("app_seller_payments_n", i.payments, { n: i.payments }) }),
        ]),
        app.el("div", { class: "amount", text: i.amount }),
      ]);
    }))];
  }

  function outstanding(app, d) {
    var o = d.outstanding;
    if (!o.open.length) return [app.el("p", { class: "empty", text: app.t("app_seller_empty_outstanding") })];
    var overdue = {};
    o.overdue.forEach(function (s) { overdue[s.currency] = s; });
    return [app.el("ul", { class: "list", id: "seller-outstanding" }, o.open.map(function (s) {
      var late = overdue[s.currency];
      return app.el("li", {}, [
        app.el("div", { class: "main" }, [
          app.el("div", { class: "title", text: app.tn("app_seller_open_n", s.invoices, { n: s.invoices }) }),
          late ? app.el("div", { class: "hint seller-late",
            text: app.tn("app_seller_overdue_n", late.invoices, { n: late.invoices, amount: late.amount }) }) : null,
        ]),
        app.el("div", { class: "amount", text: s.amount }),
      ]);
    }))];
  }

  function exports(app, d) {
    function button(kind, fmt) {
      var b = app.el("button", { type: "button", class: "btn secondary small", "data-export": kind + "." + fmt,
        text: (kind === "payments" ? app.t("app_seller_export_payments")
          : app.t("app_seller_export_invoices")) + " · " + fmt.toUpperCase() });
      b.addEventListener("click", function () {
        b.disabled = true;
        app.api("/app/api/seller/exports", { method: "POST",
          body: { kind: kind, format: fmt, from: d.from, to: d.to } })
          .then(function (r) { app.download(r.url, r.file_name); }, app.failed)
          .then(function () { b.disabled = false; });
      });
      return b;
    }
    return [
      app.el("p", { class: "hint", text: app.t("app_seller_export_hint", { from: d.from, to: d.to }) }),
      app.el("div", { class: "row seller-exports" }, [
        button("payments", "csv"), button("payments", "xlsx"),
        button("invoices", "csv"), button("invoices", "xlsx"),
      ]),
    ];
  }

  var STATUSES = ["pending", "paid", "draft", "expired", "cancelled", "void", "uncollectible"];

  function invoices(app) {
    var filter = { status: "", overdue: "", q: "" };
    var list = app.el("ul", { class: "list seller-invoices", id: "seller-invoices" });
    var more = app.el("button", { type: "button", class: "btn secondary seller-more", hidden: true,
      text: app.t("app_seller_more") });
    var cursor = null;
    var seq = 0;

    function row(i) {
      var badge = i.overdue ? app.el("span", { class: "badge overdue", text: app.t("app_seller_overdue_badge") })
        : app.el("span", { class: "badge " + i.status, text: i.status_text });
      var partly = i.status === "pending" && i.amount_due_minor !== i.amount_minor;
      var sub = [i.number || "", i.buyer || "", i.due ? app.t("app_seller_due", { date: i.due }) : "",
        partly ? app.t("app_seller_left", { amount: i.amount_due }) : ""]
        .filter(Boolean).join(" · ");
      return app.el("li", {}, [
        app.el("div", { class: "main" }, [
          app.el("a", { class: "title", href: i.url, text: i.title,
            onclick: function (e) { e.preventDefault(); app.openLink(new URL(i.url, location.href).href); } }),
          app.el("div", { class: "hint", text: sub }),
        ]),
        app.el("div", { class: "seller-inv-side" }, [
          app.el("div", { class: "amount", text: i.amount }),
          badge,
        ]),
      ]);
    }
    function load(reset) {
      var mine = ++seq;
      if (reset) { cursor = null; }
      more.disabled = true;
      app.api("/app/api/seller/invoices", { query: {
        status: filter.status, overdue: filter.overdue, q: filter.q, cursor: cursor } })
        .then(function (r) {
          if (mine !== seq) return;
          if (reset) list.textContent = "";
          r.invoices.forEach(function (i) { list.appendChild(row(i)); });
          if (!list.children.length) {
            list.appendChild(app.el("li", { class: "empty", text: app.t("app_seller_empty_invoices") }));
          }
          cursor = r.next_cursor;
          more.hidden = !cursor;
          more.disabled = false;
        }, function (err) { if (mine === seq) { more.disabled = false; app.failed(err); } });
    }
    var status = app.el("select", { id: "seller-status", "aria-label": app.t("app_seller_status") },
      [app.el("option", { value: "", text: app.t("app_seller_status_all") })].concat(STATUSES.map(function (s) {
        var key = "status_" + s; // built: listed in bot/web/i18n.py's DYNAMIC
        return app.el("option", { value: s, text: app.t(key) });
      })));
    status.addEventListener("change", function () { filter.status = status.value; load(true); });
    var overdue = app.el("input", { type: "checkbox", id: "seller-overdue-only" });
    overdue.addEventListener("change", function () { filter.overdue = overdue.checked ? "1" : ""; load(true); });
    var search = app.el("input", { type: "search", id: "seller-search", maxlength: "100",
      placeholder: app.t("app_seller_search"), "aria-label": app.t("app_seller_search") });
    var timer = null;
    search.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () { filter.q = search.value.trim(); load(true); }, 300);
    });
    more.addEventListener("click", function () { load(false); });
    load(true);
    return [
      app.el("div", { class: "row filters" }, [search]),
      app.el("div", { class: "row filters" }, [status,
        app.el("label", { class: "seller-check" }, [overdue, app.t("app_seller_overdue_only")])]),
      list, more,
    ];
  }

  function render(el, app) {
    var body = app.el("div", { class: "seller-body" }, [app.el("p", { class: "hint", text: app.t("app_loading") })]);
    function rerun() { render(el, app); }
    el.textContent = "";
    el.appendChild(periodPicker(app, rerun));
    el.appendChild(body);
    var p = period();
    var query = { from: p.from, to: p.to };
    app.api("/app/api/seller/dashboard", { query: query }).then(function (d) {
      body.textContent = "";
      var hasRevenue = d.revenue.some(function (a) { return a.amount_minor !== 0; }) ||
        d.methods.length > 0;
      body.appendChild(figures(app, d));
      body.appendChild(card(app, app.t("app_seller_h_revenue"),
        [chart(app, "seller-chart-revenue", d.charts.revenue, query, app.t("app_seller_empty_revenue"), hasRevenue)]));
      body.appendChild(card(app, app.t("app_seller_h_methods"),
        [chart(app, "seller-chart-methods", d.charts.methods, query, app.t("app_seller_empty_revenue"), d.methods.length > 0)]));
      body.appendChild(card(app, app.t("app_seller_h_top"), topItems(app, d)));
      body.appendChild(card(app, app.t("app_seller_h_outstanding"), outstanding(app, d)));
      body.appendChild(card(app, app.t("app_seller_h_export"), exports(app, d)));
      body.appendChild(card(app, app.t("app_seller_h_invoices"), invoices(app), "seller-invoice-card"));
    }, function (err) {
      body.textContent = "";
      body.appendChild(app.el("p", { class: "empty", text: err.message }));
    });
  }

  window.PaybotApp.register("seller", { render: render });
})();
