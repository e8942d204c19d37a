"""The SubscriptionManagerService port type: each subscription as a WS-Resource.

Destroy and SetTerminationTime (WS-ResourceLifetime), PauseSubscription and
ResumeSubscription, and GetResourceProperty on the SubscriptionManagerRP document;
only the subscriber (or an administrator) may see or touch one.
"""

from collections.abc import Sequence

from lxml import etree

from vws.clock import Clock, timestamp
from vws.soap import faults
from vws.soap.dispatch import Call, Operation
from vws.soap.porttypes.common import (
    SUBSCRIPTION_KEY,
    SUBSCRIPTION_SERVICE,
    property_operations,
    resource_key,
    wsrf_operation,
)
from vws.wsrf import lifetime, properties
from vws.wsrf.notification import Subscriptions, empty_response
from vws.xmlns import TOPIC_SIMPLE, WSNT, WSNT_ACTION, WSRL, WSRL_ACTION, qname


class SubscriptionPortType:
    service = SUBSCRIPTION_SERVICE

    def __init__(self, subscriptions: Subscriptions, clock: Clock) -> None:
        self._subscriptions = subscriptions
        self._clock = clock

    def operations(self) -> Sequence[Operation]:
        return [
            wsrf_operation(WSRL_ACTION, WSRL, "Destroy", self.destroy, faults.DESTROY),
            wsrf_operation(
                WSRL_ACTION, WSRL, "SetTerminationTime", self.set_termination_time, faults.SET_TERMINATION_TIME
            ),
            wsrf_operation(WSNT_ACTION, WSNT, "PauseSubscription", self.pause, faults.PAUSE_SUBSCRIPTION),
            wsrf_operation(WSNT_ACTION, WSNT, "ResumeSubscription", self.resume, faults.RESUME_SUBSCRIPTION),
            *property_operations(self._document)[:1],  # the WSDL offers GetResourceProperty only
        ]

    def _document(self, call: Call) -> properties.PropertyDocument:
        """The SubscriptionManagerRP document: what was subscribed to, by whom, since when."""
        subscription = self._subscriptions.get(_owner(call), resource_key(call, SUBSCRIPTION_KEY))

        def element(local: str, text: str | None = None) -> etree._Element:
            made = etree.Element(qname(WSNT, local), nsmap={"wsnt": WSNT})
            made.text = text
            return made

        def topic() -> list[etree._Element]:
            name = etree.QName(subscription.topic)
            expression = etree.Element(
                qname(WSNT, "TopicExpression"), {"Dialect": TOPIC_SIMPLE}, nsmap={"wsnt": WSNT, "t": name.namespace}
            )
            expression.text = f"t:{name.localname}"
            return [expression]

        renderers = {
            qname(WSNT, "ConsumerReference"): lambda: [
                subscription.consumer.to_element(qname(WSNT, "ConsumerReference"))
            ],
            qname(WSNT, "TopicExpression"): topic,
            qname(WSNT, "UseNotify"): lambda: [element("UseNotify", "true")],
            qname(WSNT, "Precondition"): list,
            qname(WSNT, "Selector"): list,
            qname(WSNT, "SubscriptionPolicy"): list,
            qname(WSNT, "CreationTime"): lambda: [element("CreationTime", timestamp(subscription.created_at))],
        }
        return properties.PropertyDocument(qname(WSNT, "SubscriptionManagerRP"), renderers, {"wsnt": WSNT})

    def destroy(self, call: Call) -> etree._Element:
        self._subscriptions.destroy(_owner(call), resource_key(call, SUBSCRIPTION_KEY))
        return lifetime.destroy_response()

    def set_termination_time(self, call: Call) -> etree._Element:
        requested = lifetime.requested_termination_time(call.body)
        subscription = self._subscriptions.set_termination_time(
            _owner(call), resource_key(call, SUBSCRIPTION_KEY), requested
        )
        return lifetime.set_termination_time_response(subscription.termination_time, self._clock.now())

    def pause(self, call: Call) -> etree._Element:
        self._subscriptions.set_paused(_owner(call), resource_key(call, SUBSCRIPTION_KEY), True)
        return empty_response("PauseSubscription")

    def resume(self, call: Call) -> etree._Element:
        self._subscriptions.set_paused(_owner(call), resource_key(call, SUBSCRIPTION_KEY), False)
        return empty_response("ResumeSubscription")


def _owner(call: Call) -> str | None:
    return None if call.caller.admin else call.caller.identity
