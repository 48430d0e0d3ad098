-- Grants and claims: items handed over outside a payment, and a guest's claim redeemed.

-- An item handed to a user outside any payment (operator gift, promotion). Returns the grant.
CREATE OR REPLACE FUNCTION grant_item_to_user(p_user bigint, p_item text) RETURNS bigint
LANGUAGE sql AS $$
    INSERT INTO grants (user_id, item_id) VALUES (p_user, p_item) RETURNING id
$$;

-- A guest paid without logging in; whoever presents the claim token gets the item, once.
CREATE OR REPLACE FUNCTION claim_grant(p_token text, p_user bigint) RETURNS grants
LANGUAGE plpgsql AS $$
DECLARE g grants%ROWTYPE;
BEGIN
    SELECT * INTO g FROM grants WHERE claim_token = p_token FOR UPDATE;
    IF g.id IS NULL THEN
        PERFORM paybot_raise('claim_not_found', left(p_token, 40));
    ELSIF g.revoked_at IS NOT NULL AND g.user_id IS DISTINCT FROM p_user THEN
        PERFORM paybot_raise('claim_revoked', left(p_token, 40));
    ELSIF g.user_id IS NOT NULL THEN
        IF g.user_id = p_user THEN
            RETURN g;  -- the same person opening the link again
        END IF;
        PERFORM paybot_raise('claim_already_used', left(p_token, 40));
    END IF;
    IF NOT EXISTS (SELECT 1 FROM users WHERE id = p_user) THEN
        PERFORM paybot_raise('user_not_found', p_user::text);
    END IF;
    UPDATE grants SET user_id = p_user, claimed_at = now() WHERE id = g.id RETURNING * INTO g;
    IF g.achievement_id IS NOT NULL THEN
        INSERT INTO achievements (user_id, achievement_id, grant_id)
            VALUES (p_user, g.achievement_id, g.id) ON CONFLICT DO NOTHING;
    END IF;
    RETURN g;
END $$;

-- A reversed payment (a manual payment undone, a Stars refund) takes back what it bought: its
-- grant is revoked in the reversal's transaction, whichever path wrote it. The row stays (it
-- is history); inventories and claims skip it. Statement-level, as the rollups' triggers.
CREATE OR REPLACE FUNCTION paybot_revoke_reversed_grants() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE grants g SET revoked_at = now()
      FROM new_reversals v
     WHERE g.payment_id = v.payment_id AND g.revoked_at IS NULL;
    RETURN NULL;
END $$;

CREATE TRIGGER payment_reversals_revoke_grants AFTER INSERT ON payment_reversals
    REFERENCING NEW TABLE AS new_reversals
    FOR EACH STATEMENT EXECUTE FUNCTION paybot_revoke_reversed_grants();
