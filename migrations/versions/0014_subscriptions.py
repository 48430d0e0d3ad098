"""Subscriptions: a seller's plans (periods of 1, 3, 6 or 12 months with their prices, a trial,
what they grant: an item, a channel), subscriptions with calendar-month periods anchored like
Stripe's billing-cycle anchor, each paid period an ordinary invoice; changes and reminders.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-27
"""

from migrations.sql import apply_sql_files, restore_sql_files, run_script

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# ledger.sql.checksum() of the files this revision applies
SQL_FILES_SHA256 = "faa369bcd5e0b952ec94fc55740f1a535d784a9ee5288b25f411da313000e580"

LIVE = "('incomplete', 'trialing', 'active', 'past_due')"


def upgrade() -> None:
    run_script(f"""
CREATE TABLE plans (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    public_id       text NOT NULL UNIQUE CHECK (public_id ~ '^[0-9A-HJKMNP-TV-Z]{{13}}$'),
    seller_id       bigint NOT NULL REFERENCES users (id),
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 128),
    currency        text NOT NULL REFERENCES currencies (code),
    trial_days      int NOT NULL DEFAULT 0 CHECK (trial_days BETWEEN 0 AND 365),
    item_id         text CHECK (length(item_id) BETWEEN 1 AND 512),
    achievement_id  text CHECK (length(achievement_id) BETWEEN 1 AND 512),
    channel_chat_id bigint,
    channel_title   text CHECK (length(channel_title) <= 256),
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'archived')),
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX plans_seller ON plans (seller_id, id DESC);
CREATE INDEX plans_channel ON plans (channel_chat_id) WHERE channel_chat_id IS NOT NULL;

CREATE TABLE plan_prices (
    plan_id bigint NOT NULL REFERENCES plans (id),
    months  int NOT NULL CHECK (months IN (1, 3, 6, 12)),
    amount  bigint NOT NULL CHECK (amount > 0),
    PRIMARY KEY (plan_id, months)
);

CREATE TABLE subscriptions (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    public_id            text NOT NULL UNIQUE CHECK (public_id ~ '^[0-9A-HJKMNP-TV-Z]{{13}}$'),
    plan_id              bigint NOT NULL REFERENCES plans (id),
    seller_id            bigint NOT NULL REFERENCES users (id),
    subscriber_id        bigint NOT NULL REFERENCES users (id),
    months               int NOT NULL CHECK (months IN (1, 3, 6, 12)),
    amount               bigint NOT NULL CHECK (amount > 0),
    currency             text NOT NULL REFERENCES currencies (code),
    status               text NOT NULL CHECK (status IN ('incomplete', 'trialing', 'active',
                                                         'past_due', 'cancelled', 'expired')),
    -- Period k ends at anchor_at + ((k - anchor_index + 1) * months + extra_months) calendar
    -- months (UTC), always counted from the anchor: 31 Jan, 28 Feb, 31 Mar ...
    anchor_at            timestamptz NOT NULL,
    anchor_index         int NOT NULL DEFAULT 0,
    extra_months         int NOT NULL DEFAULT 0 CHECK (extra_months >= 0),
    period_index         int NOT NULL DEFAULT 0,
    current_period_start timestamptz NOT NULL,
    current_period_end   timestamptz NOT NULL,
    trial_end            timestamptz,
    trial_plan_id        bigint REFERENCES plans (id),  -- the plan whose trial this was
    cancel_at_period_end boolean NOT NULL DEFAULT false,
    grace_until          timestamptz,
    retry_at             timestamptz,  -- past due: when the balance is tried again
    cancelled_at         timestamptz,
    ended_at             timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ended_when_over CHECK ((ended_at IS NOT NULL) = (status IN ('cancelled', 'expired')))
);
-- One live subscription per plan and subscriber: subscribing twice is refused by the index too.
CREATE UNIQUE INDEX subscriptions_live ON subscriptions (plan_id, subscriber_id)
    WHERE status IN {LIVE};
CREATE INDEX subscriptions_due ON subscriptions (current_period_end)
    WHERE status IN ('trialing', 'active', 'past_due');
CREATE INDEX subscriptions_subscriber ON subscriptions (subscriber_id, id DESC);
CREATE INDEX subscriptions_seller ON subscriptions (seller_id, id DESC);

-- One row per (subscription, period): what makes a renewal happen once. A paid period points
-- at the invoice that paid it; a trial has none.
CREATE TABLE subscription_periods (
    subscription_id bigint NOT NULL REFERENCES subscriptions (id),
    period_index    int NOT NULL,
    starts_at       timestamptz NOT NULL,
    ends_at         timestamptz NOT NULL,
    invoice_id      bigint UNIQUE REFERENCES invoices (id),
    status          text NOT NULL CHECK (status IN ('trial', 'open', 'paid', 'void')),
    paid_at         timestamptz,
    PRIMARY KEY (subscription_id, period_index),
    CHECK (ends_at > starts_at)
);

CREATE TABLE subscription_changes (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscription_id bigint NOT NULL REFERENCES subscriptions (id),
    kind            text NOT NULL CHECK (kind IN ('extend', 'change', 'cancel')),
    detail          jsonb NOT NULL DEFAULT '{{}}',
    reason          text CHECK (length(reason) <= 500),
    actor_id        bigint REFERENCES users (id),
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX subscription_changes_of ON subscription_changes (subscription_id, id);

CREATE TABLE subscription_reminders (
    subscription_id bigint NOT NULL REFERENCES subscriptions (id),
    period_index    int NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('before_3', 'grace')),
    sent_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subscription_id, period_index, kind)
);

ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_kind_check;
ALTER TABLE ledger_transactions ADD CONSTRAINT ledger_transactions_kind_check CHECK (kind IN
    ('invoice_payment', 'external_payment', 'deposit', 'adjustment', 'excess', 'suspense',
     'release', 'manual_payment', 'manual_reversal', 'proration'));
""")
    apply_sql_files(revision, SQL_FILES_SHA256)


def downgrade() -> None:
    restore_sql_files(revision)
    run_script("""
ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_kind_check;
ALTER TABLE ledger_transactions ADD CONSTRAINT ledger_transactions_kind_check CHECK (kind IN
    ('invoice_payment', 'external_payment', 'deposit', 'adjustment', 'excess', 'suspense',
     'release', 'manual_payment', 'manual_reversal'));
DROP TABLE subscription_reminders, subscription_changes, subscription_periods, subscriptions,
    plan_prices, plans;
""")
