/* The operator tab (OPERATOR_TELEGRAM_IDS only): what `paybot admin` shows and does.
 *
 * One read, /app/api/operator/overview, fills the sections: the ledger's invariants, held
 * transfers (resolve), held card/Stars payments, failed callbacks (send again), payouts to
 * approve (approve, reject) and the system accounts. Every action asks for confirmation
 * (Telegram's dialog inside Telegram, the browser's elsewhere), posts to its route, and the
 * sections are read again. Data goes into the page as text only (app.el).
 */
(function () {
  "use strict";
  var App = window.PaybotApp;
  if (!App) return;
  var BASE = "/app/api/operator";

  function confirmThen(text, go) {
    var tg = window.Telegram && window.Telegram.WebApp;
    if (tg && tg.showConfirm) {
      try { tg.showConfirm(text, function (ok) { if (ok) go(); }); return; } catch (e) { /* below */ }
    }
    if (window.confirm(text)) go();
  }

  function when(app, iso) {
    if (!iso) return "";
    var d = new Date(iso);
    try {
      return d.toLocaleString(app.lang, { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });
    } catch (e) { return iso; }
  }
  function short(text, head, tail) {
    if (!text || text.length <= head + tail + 1) return text || "";
    return text.slice(0, head) + "…" + text.slice(-tail);
  }
  function amount(m) { return m ? m.text + " " + m.currency : ""; }

  // Keys are written out whole (never built from parts) so that the extractor finds them.
  function section(app, id, title, count, kind) {
    var badge = count === null ? null
      : app.el("span", { class: "badge " + (count ? kind || "warn" : "ok"), text: String(count) });
    return app.el("section", { class: "card op-section", id: "op-" + id }, [
      app.el("h2", { class: "op-head" }, [app.el("span", { text: title }), badge]),
    ]);
  }
  function invariantWord(app, status) {
    if (status === "ok") return app.t("app_operator_inv_ok");
    if (status === "broken") return app.t("app_operator_inv_broken");
    return app.t("app_operator_inv_unknown");
  }
  function reasonWord(app, reason) {
    return {
      unmatched: app.t("app_operator_reason_unmatched"),
      late_or_duplicate: app.t("app_operator_reason_late_or_duplicate"),
      partial: app.t("app_operator_reason_partial"),
      excess: app.t("app_operator_reason_excess"),
    }[reason] || reason || "";
  }
  function emptyList(app) { return app.el("p", { class: "empty", text: app.t("app_operator_none") }); }

  // Post an action, then read everything again; the server's sentence on a refusal.
  function act(app, reload, path, body) {
    return app.api(BASE + path, { method: "POST", body: body || {} }).then(function () {
      reload(app.t("app_operator_done"));
    }, function (err) { app.failed(err); });
  }

  // --- sections ----------------------------------------------------------------------------

  function invariants(app, inv) {
    var kind = { ok: "ok", broken: "bad", unknown: "warn" }[inv.status] || "warn";
    var box = section(app, "invariants", app.t("app_operator_invariants"), null);
    box.querySelector(".op-head").appendChild(
      app.el("span", { class: "badge " + kind, id: "op-inv-status", text: invariantWord(app, inv.status) }));
    if (inv.violations.length) {
      box.appendChild(app.el("ul", { class: "op-violations" },
        inv.violations.map(function (v) { return app.el("li", { text: v }); })));
    }
    if (inv.status === "unknown") {
      box.appendChild(app.el("p", { class: "hint", text: app.t("app_operator_inv_unknown_hint") }));
      var s = inv.scheduled;
      box.appendChild(app.el("p", { class: "hint", id: "op-inv-scheduled", text: !s
        ? app.t("app_operator_inv_scheduled_none")
        : s.broken ? app.t("app_operator_inv_scheduled_broken", { time: when(app, s.since) })
          : app.t("app_operator_inv_scheduled_ok", { time: when(app, s.since) }) }));
    }
    box.appendChild(app.el("p", { class: "hint", text: app.t("app_operator_checked_at", { time: when(app, inv.checked_at) }) }));
    return box;
  }

  var FIELD = { apply: "invoice", credit: "telegram_id", refund_note: "note" };

  function resolveForm(app, reload, t) {
    var PLACEHOLDER = { apply: app.t("app_operator_ph_invoice"), credit: app.t("app_operator_ph_user"),
      refund_note: app.t("app_operator_ph_refund_note") };
    var LABEL = { apply: app.t("app_operator_act_apply"), credit: app.t("app_operator_act_credit"),
      refund: app.t("app_operator_act_refund"), refund_note: app.t("app_operator_act_refund_note") };
    var select = app.el("select", { "aria-label": app.t("app_operator_resolve") },
      ["apply", "credit", "refund", "refund_note"].map(function (a) {
        return app.el("option", { value: a, text: LABEL[a] });
      }));
    var target = app.el("input", { type: "text", autocomplete: "off" });
    var note = app.el("input", { type: "text", autocomplete: "off", placeholder: app.t("app_operator_ph_note"), maxlength: "500" });
    function sync() {
      var a = select.value;
      target.hidden = !PLACEHOLDER[a];
      target.placeholder = PLACEHOLDER[a] || "";
      target.inputMode = a === "credit" ? "numeric" : "text";
      note.hidden = a === "refund_note";
    }
    select.addEventListener("change", sync);
    sync();
    var go = app.el("button", { type: "submit", class: "btn small", text: app.t("app_operator_resolve") });
    var form = app.el("form", { class: "filters op-form" }, [select, target, note, go]);
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var a = select.value, value = target.value.trim(), body = { action: a };
      if (FIELD[a] === "telegram_id") body.telegram_id = /^\d+$/.test(value) ? Number(value) : value;
      else if (FIELD[a]) body[FIELD[a]] = value;
      if (a !== "refund_note" && note.value.trim()) body.note = note.value.trim();
      var params = { invoice: value, user: value, amount: amount(t.amount), address: short(t.source, 8, 6) };
      var text = {
        apply: app.t("app_operator_confirm_apply", params),
        credit: app.t("app_operator_confirm_credit", params),
        refund: app.t("app_operator_confirm_refund", params),
        refund_note: app.t("app_operator_confirm_refund_note", params),
      }[a];
      confirmThen(text, function () {
        go.disabled = true;
        act(app, reload, "/transfers/" + encodeURIComponent(t.tx_hash) + "/resolve", body)
          .then(function () { go.disabled = false; });
      });
    });
    return form;
  }

  function heldTransfers(app, reload, rows) {
    var box = section(app, "held", app.t("app_operator_held"), rows.length);
    box.appendChild(app.el("p", { class: "hint", text: app.t("app_operator_held_hint") }));
    if (!rows.length) { box.appendChild(emptyList(app)); return box; }
    box.appendChild(app.el("ul", { class: "list op-list" }, rows.map(function (t) {
      var reason = reasonWord(app, t.reason);
      var form = resolveForm(app, reload, t);
      form.hidden = true;
      var open = app.el("button", { type: "button", class: "btn small secondary", text: app.t("app_operator_resolve"),
        onclick: function () { form.hidden = !form.hidden; } });
      return app.el("li", { class: "op-item", "data-tx": t.tx_hash }, [
        app.el("div", { class: "op-line" }, [
          app.el("div", { class: "main" }, [
            app.el("div", { class: "title" }, [app.el("span", { class: "amount", text: amount(t.amount) }), " ",
              app.el("span", { class: "badge warn", text: reason })]),
            app.el("div", { class: "op-comment", text: t.comment ? "“" + t.comment + "”" : app.t("app_operator_no_comment") }),
            app.el("div", { class: "hint", title: t.tx_hash, text: when(app, t.at) + " · " + short(t.tx_hash, 8, 6)
              + (t.invoice ? " · INV-" + t.invoice : "") }),
          ]),
          open,
        ]),
        form,
      ]);
    })));
    return box;
  }

  function heldRails(app, rows) {
    var box = section(app, "rails", app.t("app_operator_rails"), rows.length);
    if (!rows.length) { box.appendChild(emptyList(app)); return box; }
    box.appendChild(app.el("p", { class: "hint", text: app.t("app_operator_rails_hint") }));
    box.appendChild(app.el("ul", { class: "list op-list" }, rows.map(function (p) {
      return app.el("li", {}, [
        app.el("div", { class: "main" }, [
          app.el("div", { class: "title", text: "#" + p.id + " · " + p.rail }),
          app.el("div", { class: "hint", text: when(app, p.at) + " · " + (p.reason || "")
            + (p.invoice ? " · INV-" + p.invoice : "") }),
        ]),
        app.el("span", { class: "amount", text: amount(p.amount) }),
      ]);
    })));
    return box;
  }

  function failedCallbacks(app, reload, rows) {
    var box = section(app, "callbacks", app.t("app_operator_callbacks"), rows.length, "bad");
    if (!rows.length) { box.appendChild(emptyList(app)); return box; }
    box.appendChild(app.el("ul", { class: "list op-list" }, rows.map(function (c) {
      var who = c.seller.username ? "@" + c.seller.username : String(c.seller.telegram_id || "");
      var button = app.el("button", { type: "button", class: "btn small", text: app.t("app_operator_redeliver") });
      button.addEventListener("click", function () {
        var what = c.event + " · INV-" + c.invoice;
        confirmThen(app.t("app_operator_confirm_redeliver", { event: what }), function () {
          button.disabled = true;
          act(app, reload, "/callbacks/" + encodeURIComponent(c.event_id) + "/redeliver")
            .then(function () { button.disabled = false; });
        });
      });
      return app.el("li", { class: "op-item", "data-event": c.event_id }, [
        app.el("div", { class: "op-line" }, [
          app.el("div", { class: "main" }, [
            app.el("div", { class: "title", text: c.event + " · INV-" + c.invoice }),
            app.el("div", { class: "hint", text: app.t("app_operator_seller", { who: who }) + " · "
              + app.t("app_operator_attempts", { n: c.attempts }) }),
            app.el("div", { class: "op-endpoint", text: c.endpoint || app.t("app_operator_default_endpoint") }),
            c.last_error ? app.el("div", { class: "op-error", text: c.last_error }) : null,
          ]),
          button,
        ]),
      ]);
    })));
    return box;
  }

  function payoutsToApprove(app, reload, rows) {
    var box = section(app, "payouts", app.t("app_operator_payouts"), rows.length);
    if (!rows.length) { box.appendChild(emptyList(app)); return box; }
    box.appendChild(app.el("ul", { class: "list op-list" }, rows.map(function (p) {
      var note = app.el("input", { type: "text", placeholder: app.t("app_operator_ph_reject"), maxlength: "500" });
      var approve = app.el("button", { type: "button", class: "btn small", text: app.t("app_operator_approve") });
      var reject = app.el("button", { type: "button", class: "btn small secondary", text: app.t("app_operator_reject") });
      var params = { id: p.id, amount: amount(p.amount) };
      approve.addEventListener("click", function () {
        confirmThen(app.t("app_operator_confirm_approve", params), function () {
          act(app, reload, "/payouts/" + p.id + "/approve", {});
        });
      });
      reject.addEventListener("click", function () {
        if (!note.value.trim()) { note.focus(); return; }
        confirmThen(app.t("app_operator_confirm_reject", params), function () {
          act(app, reload, "/payouts/" + p.id + "/reject", { note: note.value.trim() });
        });
      });
      return app.el("li", { class: "op-item" }, [
        app.el("div", { class: "op-line" }, [
          app.el("div", { class: "main" }, [
            app.el("div", { class: "title", text: "#" + p.id + " · " + amount(p.amount) }),
            app.el("div", { class: "hint", text: when(app, p.at) + " · " + app.t("app_operator_user", { id: p.user_id })
              + (p.debit ? " · " + amount(p.debit) : "") }),
            app.el("div", { class: "op-endpoint", text: p.destination }),
          ]),
        ]),
        app.el("div", { class: "filters op-form" }, [note, approve, reject]),
      ]);
    })));
    return box;
  }

  function balances(app, rows) {
    var box = section(app, "balances", app.t("app_operator_balances"), null);
    if (!rows.length) { box.appendChild(emptyList(app)); return box; }
    box.appendChild(app.el("table", { class: "table" }, [app.el("tbody", {}, rows.map(function (b) {
      return app.el("tr", {}, [
        app.el("td", { text: b.account }),
        app.el("td", { class: "num", text: amount(b.balance) }),
      ]);
    }))]));
    return box;
  }

  function figures(app, data) {
    function figure(label, value, kind) {
      return app.el("div", { class: "figure" + (kind ? " op-" + kind : "") }, [
        app.el("div", { class: "label", text: label }),
        app.el("div", { class: "value", text: value }),
      ]);
    }
    var inv = data.invariants.status;
    return app.el("div", { class: "figures op-figures" }, [
      figure(app.t("app_operator_held"), String(data.held_transfers.length),
        data.held_transfers.length ? "warn" : null),
      figure(app.t("app_operator_callbacks"), String(data.failed_callbacks.length), data.failed_callbacks.length ? "bad" : null),
      figure(app.t("app_operator_payouts"), String(data.payouts_to_approve.length), data.payouts_to_approve.length ? "warn" : null),
      figure(app.t("app_operator_invariants"), invariantWord(app, inv),
        { ok: "ok", broken: "bad", unknown: "warn" }[inv]),
    ]);
  }

  App.register("operator", {
    render: function (el, app) {
      function reload(done) {
        app.api(BASE + "/overview").then(function (data) {
          el.textContent = "";
          el.appendChild(figures(app, data));
          el.appendChild(invariants(app, data.invariants));
          el.appendChild(heldTransfers(app, reload, data.held_transfers));
          el.appendChild(failedCallbacks(app, reload, data.failed_callbacks));
          el.appendChild(payoutsToApprove(app, reload, data.payouts_to_approve));
          el.appendChild(heldRails(app, data.held_rail_payments));
          el.appendChild(balances(app, data.system_balances));
          app.message(typeof done === "string" ? done : "", typeof done === "string" ? "ok" : "");
        }, function (err) { app.failed(err); });
      }
      reload();
    },
  });
})();
