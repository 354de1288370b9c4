"""The audit trail: an append-only record of staff actions and sensitive client actions.

    from integrations.audit.services import audit_record
    audit_record(action="payment.refund", actor=request.user, target=refund, request=request, amount=500)

Rows are never changed or deleted by the application; on PostgreSQL a trigger
refuses UPDATE and DELETE outright (pruning archived rows is the one exception,
and it has to say so inside its transaction).
"""
