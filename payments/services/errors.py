"""Payments refusals: DomainErrors whose class fixes the HTTP status and the stable code."""

from integrations.errors import DomainError


class PaymentsError(DomainError):
    """A payments refusal: the subclass fixes the HTTP status and the stable code; the caller gives the sentence."""

    status = 400
    code = "invalid"

    def __init__(self, detail, **extra):
        super().__init__(type(self).status, type(self).code, detail, **extra)


class InvoiceNotPayable(PaymentsError):
    status = 409
    code = "invoice_not_payable"


class InvalidTransition(PaymentsError):
    status = 409
    code = "invalid_state"


class RefundTooLarge(PaymentsError):
    status = 400
    code = "refund_exceeds_remaining"


class RefundAmountInvalid(PaymentsError):
    status = 400
    code = "refund_amount_invalid"


class OperationPending(PaymentsError):
    status = 409
    code = "operation_pending"


class PaymentChargedBack(PaymentsError):
    """A lost dispute took the money back: Stripe refuses a refund on a charged-back charge."""

    status = 409
    code = "payment_charged_back"


class PaymentDisputed(PaymentsError):
    """A chargeback is open on the charge: Stripe takes no refund of it until the dispute is decided."""

    status = 409
    code = "payment_disputed"
