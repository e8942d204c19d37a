"""QueryResourceProperties over HTTP keep-alive, beside GetResourceProperty on the same workspace.

A query renders the whole property document and is evaluated in a worker process (issue 10):
the difference between the two p50s is what that costs. Then what a hostile query costs the
service: the time until a nested count(//*) that would run for minutes is refused.
"""

import time

from common import report, running_service, timed
from lxml import etree

from tests.gt4wire import Gt4Client, SoapFault, created_eprs
from vws.xmlns import TYPES, WSRP, WSRP_ACTION, XPATH_DIALECT, qname

COUNT = 500
STATE = qname(TYPES, "currentState")


def query(client: Gt4Client, epr, text: str) -> etree._Element:
    body = etree.Element(qname(WSRP, "QueryResourceProperties"), nsmap={"wsrp": WSRP, "t": TYPES})
    etree.SubElement(body, qname(WSRP, "QueryExpression"), Dialect=XPATH_DIALECT).text = text
    return client.call(epr, WSRP_ACTION + "QueryResourceProperties", body)


def main() -> None:
    with running_service() as service:
        client = Gt4Client(service.base_url)
        (epr,) = created_eprs(client.create())
        get = report("GetResourceProperty currentState", timed(lambda: client.get_property(epr, STATE), COUNT))
        text = "string(/*/t:currentState/t:state)"
        found = report(f"Query {text}", timed(lambda: query(client, epr, text), COUNT))
        report("Query count(//*)", timed(lambda: query(client, epr, "count(//*)"), COUNT))
        print(f"{'Query / GetResourceProperty':<44} {found['p50_ms'] / get['p50_ms']:.2f}x (p50)")
        nested = "count(//*)"
        for _ in range(5):
            nested = f"count(//*[{nested}])"
        started = time.perf_counter()
        try:
            query(client, epr, nested)
            outcome = "answered"
        except SoapFault as fault:
            outcome = fault.description
        except TimeoutError:
            outcome = "no answer: the client gave up"
        print(f"{'nested count(//*), 5 levels':<44} {time.perf_counter() - started:7.3f} s: {outcome[:60]}")


if __name__ == "__main__":
    main()
