"""One message handled: ledger, intake or reply, authorization, effects, outbox."""
