"""Everything ``vws-service`` runs, wired together in one place.

The store, pool, workspace manager, lease sweeper and the HTTP server are built from
one Config; ``start`` binds (port 0 picks a free port) and ``stop`` drains.
"""

import functools
import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from vws import affinity
from vws import state_dir as private
from vws.clock import Clock, Sweeper, SystemClock
from vws.config import Config, ConfigError, NotificationConfig, ServiceConfig
from vws.context.broker import ContextBroker
from vws.errors import NotAuthorized
from vws.pool.manager import PoolManager
from vws.security import appliances as appliance_signatures
from vws.security.appliances import Producers
from vws.security.ca import DevCA
from vws.security.credentials import Credential
from vws.security.gridmap import GridMap
from vws.security.gridmap import check_file as check_gridmap
from vws.security.hostcerts import HostCertificates
from vws.security.keyholder import KeyHolder
from vws.security.trust import TrustStore
from vws.security.validation import ChainValidator
from vws.security.wssecurity.policy import SecurityPolicy, methods
from vws.security.wssecurity.signing import MessageSigner
from vws.security.wssecurity.verification import MessageVerifier
from vws.soap.application import Answer, refusal, wsgi_application
from vws.soap.ctxagent import PATH as AGENT_PATH
from vws.soap.ctxagent import AgentDoor
from vws.soap.gatekeeper import Gatekeeper, OpenGate, SignedGate, TransportGate
from vws.soap.metrics import Metrics, Readings
from vws.soap.porttypes.catalog import CatalogPortType
from vws.soap.porttypes.common import Endpoints
from vws.soap.porttypes.context import ContextPortType
from vws.soap.porttypes.ensemble import EnsemblePortType
from vws.soap.porttypes.factory import FactoryPortType
from vws.soap.porttypes.group import GroupPortType
from vws.soap.porttypes.producer import AllocationPublisher, ProducerOperations, StatePublisher
from vws.soap.porttypes.status import StatusPortType
from vws.soap.porttypes.subscription import SubscriptionPortType
from vws.soap.porttypes.workspace import WorkspacePortType
from vws.soap.replay import StoredReplayCache
from vws.soap.server import HttpServer, Limits
from vws.soap.status_links import StatusLinks, link_key
from vws.soap.status_page import StatusSources, status_page
from vws.soap.transport import GsiTransport, TransportSecurity
from vws.soap.wsgi import SERVICES_PATH, Router, WsgiApp, health_page
from vws.store.database import Store
from vws.workspace.accounting import Accounting
from vws.workspace.appliances import Appliances
from vws.workspace.caller import SERVICE, Caller
from vws.workspace.ensembles import Ensembles
from vws.workspace.groups import Groups
from vws.workspace.manager import WorkspaceManager
from vws.workspace.quotas import Quotas
from vws.wsrf.delivery import Delivery, DeliveryPolicy, Outbox
from vws.wsrf.notification import NotificationProducer, Subscriptions

log = logging.getLogger(__name__)


class Service:
    def __init__(self, config: Config, clock: Clock | None = None, gatekeeper: Gatekeeper | None = None) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        state_dir = config.service.state_dir
        private.create(state_dir)
        self.store = Store(state_dir / "vws.sqlite")
        # The pool reports libvirt lifecycle events up to the manager, built just after it.
        self.pool = PoolManager(
            self.store, config.pool, self.clock, state_dir, on_event=lambda *event: self.manager.on_domain_event(*event)
        )
        self.manager = WorkspaceManager(self.store, self.pool, self.clock, config.policy, config.pool.deployers)
        self.leases = Sweeper(
            self.clock,
            self.manager.next_termination,
            self.manager.expire_due,
            timedelta(seconds=config.policy.sweep_seconds),
            name="lease-sweeper",
        )
        self.reservations = Sweeper(
            self.clock,
            self.manager.next_reservation_due,
            self.manager.start_due_reservations,
            timedelta(seconds=config.policy.sweep_seconds),
            name="reservation-starter",
        )
        self.reconciler = Sweeper(
            self.clock,
            lambda: None,
            self.manager.reconcile,
            timedelta(seconds=config.pool.reconcile_seconds),
            name="reconciler",
            first_after_period=True,  # start() reconciles first, in begin_recovery()
        )
        # Only a termination time earlier than the sweeper's next deadline needs it to look again.
        self.manager.add_listener(lambda workspace: self.leases.due_by(workspace.termination_time))
        lead = timedelta(seconds=config.policy.reservation_lead_seconds)
        self.manager.add_listener(
            lambda workspace: workspace.request.start_at and self.reservations.due_by(workspace.request.start_at - lead)
        )
        # One grid-mapfile for who may call (the gatekeeper) and their accounts' quota rules.
        check_gridmap(gridmap_file(config))
        self.gridmap = GridMap(gridmap_file(config))
        self._key_holder: KeyHolder | None = None
        if gatekeeper is None:
            replays = StoredReplayCache(self.store, self.clock)
            gatekeeper, self._key_holder = _gatekeeper(config, self.clock, self.gridmap, replays)
        self.gatekeeper = gatekeeper
        self._add_notifications_and_accounting(config)
        self.metrics = Metrics(
            Readings(
                workspaces=self.manager.census,
                nodes=self.pool.loads,
                leases=self.pool.lease_counts,
                deployer=self.manager.bookkeeping,
                outbox=self.outbox.depth,
            )
        )
        self._server: HttpServer | None = None
        self._ec2_server: HttpServer | None = None
        self._agent_server: HttpServer | None = None
        self.app: Router | None = None  # the WSGI app the HTTP front runs, once started
        self.base_url = ""
        self.ec2_url = ""  # the EC2 door's endpoint, when [ec2] listen opens one
        self.agent_url = ""  # the agents' door's own listener, when [service] agent_listen opens one
        warning = private.exposure_warning(state_dir)
        if warning:
            log.warning("%s", warning)

    def _add_notifications_and_accounting(self, config: Config) -> None:
        """Subscriptions and their delivery, accounting records, quotas, groups and ensembles."""
        self.subscriptions = Subscriptions(self.store, self.clock)
        self.outbox = Outbox(self.store)
        # Notifications are signed with the host credential whenever the service signs its replies.
        self.delivery = Delivery(
            self.clock,
            _delivery_policy(config.notification),
            on_dead=lambda lane: self.producer.consumer_dead(lane),
            seal=self.gatekeeper.sign,
            outbox=self.outbox,
        )
        self.producer = NotificationProducer(self.subscriptions, self.delivery.send)
        self.manager.add_listener(StatePublisher(self.producer, self.clock))
        self.manager.add_allocation_listener(AllocationPublisher(self.producer))
        self.accounting = Accounting(self.store, self.clock, config.accounting.charge_granularity_minutes)
        self.manager.add_listener(self.accounting.record)
        quotas = Quotas(config.quotas, config.accounting.charge_granularity_minutes, self.gridmap.accounts)
        self.manager.add_admission_check(quotas.check)
        self.groups = Groups(self.manager)
        producers = Producers.from_dir(config.appliances.producers_dir or config.service.state_dir / "producers")
        verify = functools.partial(appliance_signatures.verify, producers=producers)
        self.appliances = Appliances(self.pool, verify, config.appliances.require_signed)
        self.manager.add_resolver(self.appliances.resolve)
        self.ensembles = Ensembles(self.store, self.manager, self.clock)
        self._add_context_broker(config)

    def _add_context_broker(self, config: Config) -> None:
        """Contexts live, before members' leases extend them, as long as a workspace by default; members'
        host certificates come from the development CA, when ``vws-admin ca init`` made one."""
        certificates = HostCertificates.of(DevCA(config.service.state_dir / "security"), self.clock)
        lifetime = timedelta(seconds=config.policy.default_running_seconds)
        self.contexts = ContextBroker(self.store, self.clock, lifetime, certificates, _agents_shut_out(config))
        self.manager.add_listener(self.contexts.on_workspace)
        self.context_sweeper = Sweeper(
            self.clock,
            self.contexts.next_termination,
            self.contexts.expire_due,
            timedelta(seconds=config.policy.sweep_seconds),
            name="context-sweeper",
        )

    def start(self) -> str:
        """Bind and serve, taking the nodes up in the background (see ``vws.workspace.recovery``);
        returns the services base URL."""
        self.accounting.catch_up()
        self.delivery.start()
        self.manager.begin_recovery()
        host, _, port = self.config.service.listen.rpartition(":")
        limits, tls = service_limits(self.config.service), _transport(self.config, self.clock)
        server = HttpServer(limits, tls, refusal(self.clock))
        bound_host, bound_port = server.bind(host or "127.0.0.1", int(port))
        scheme = "https" if server.tls else "http"
        self.base_url = self.config.service.base_url or f"{scheme}://{bound_host}:{bound_port}{SERVICES_PATH}"
        if self.config.service.agent_listen:
            self._start_agent_door()
        self.app = self._router()
        server.start(self.app)
        self._server = server
        if self.config.ec2.listen:
            self._start_ec2()
        self.reconciler.start()
        self.leases.start()
        self.reservations.start()
        self.context_sweeper.start()
        return self.base_url

    def _start_ec2(self) -> None:
        """The EC2 door on its own port, served by a second instance of the same HTTP front and limits."""
        from vws.ec2.app import door_app  # here: botocore costs every start 0.15 s of CPU, paid only with the door open

        config = self.config
        app = door_app(
            config.ec2,
            config.service.state_dir,
            self.store,
            self.clock,
            self.manager,
            self.pool.repository.images,
            StoredReplayCache(self.store, self.clock),
            self._ec2_caller,
            timedelta(seconds=config.policy.maximum_running_seconds),
            lambda action, caller, outcome, seconds: self.metrics.answered(
                Answer("EC2", action, caller, "-", outcome, seconds)
            ),
        )
        self._ec2_server, self.ec2_url = self._plain_listener(config.ec2.listen, app)

    def _start_agent_door(self) -> None:
        """The agents' door alone (no SOAP, no pages) on its own port, for guests that have no client
        certificate. Plain HTTP, as the door is on the main port without tls: the context's secret is
        what admits an agent, and busybox wget, all an agent may have, cannot check a server certificate.
        Bind it where only the guests' network reaches."""
        self._agent_server, url = self._plain_listener(self.config.service.agent_listen, AgentDoor(self.contexts))
        self.agent_url = url.removesuffix("/") + AGENT_PATH

    def _plain_listener(self, listen: str, app: WsgiApp) -> tuple[HttpServer, str]:
        """A second instance of the HTTP front, with the same limits, serving ``app`` on ``listen``; and its URL."""
        server = HttpServer(service_limits(self.config.service))
        host, _, port = listen.rpartition(":")
        bound_host, bound_port = server.bind(host or "127.0.0.1", int(port))
        server.start(app)
        return server, f"http://{bound_host}:{bound_port}/"

    def _ec2_caller(self, identity: str) -> Caller:
        """An access key's grid identity, as the WSRF side would admit it: admin, or in the grid-mapfile."""
        admin = identity in self.config.security.admin_dns
        if not (admin or self.config.service.insecure):
            try:
                self.gridmap.require(identity)
            except NotAuthorized:
                log.warning("refused an EC2 request from %s: not in the grid-mapfile", identity)
                raise
        return Caller(identity, admin=admin)

    def _router(self) -> Router:
        policy, max_body = self.config.policy, self.config.service.max_body_kb * 1024
        endpoints = Endpoints(self.base_url, self.config.service.agent_url or self.agent_url)
        port_types = [
            FactoryPortType(
                self.manager,
                endpoints,
                timedelta(seconds=policy.default_running_seconds),
                timedelta(seconds=policy.maximum_running_seconds),
                self.pool.associations,
                self.ensembles,
                self.pool.offer,
                self.appliances.catalogue,
                self.contexts,
            ),
            WorkspacePortType(
                self.manager, self.clock, ProducerOperations(self.manager, self.subscriptions, endpoints)
            ),
            SubscriptionPortType(self.subscriptions, self.clock),
            GroupPortType(self.groups),
            EnsemblePortType(self.ensembles, endpoints),
            StatusPortType(self.manager, self.accounting, endpoints, policy.max_listed_workspaces),
            CatalogPortType(self.appliances.catalogue),
            ContextPortType(self.contexts, endpoints),
        ]
        return Router(
            {
                port.service: wsgi_application(
                    port, self.gatekeeper, self.clock, self.base_url + port.service, max_body, self.metrics.answered
                )
                for port in port_types
            },
            self.base_url,
            pages=self._pages(),
            mounts={} if self._agent_server else {AGENT_PATH: AgentDoor(self.contexts)},
        )

    def _pages(self) -> dict[str, WsgiApp]:
        """The plain GET pages for operators beside the SOAP services."""
        pages: dict[str, WsgiApp] = {"/health": health_page(self.store.problem), "/status": self._status_page()}
        if self.config.service.metrics_open:
            pages["/metrics"] = self.metrics.page
        return pages

    def _status_page(self) -> WsgiApp:
        admins = frozenset(self.config.security.admin_dns)
        links = StatusLinks(link_key(self.config.service.state_dir), self.clock, admins)
        sources = StatusSources(
            workspaces=lambda most: self.manager.workspaces(SERVICE, most),
            live=lambda: sum(self.manager.census().values()),
            nodes=self.pool.loads,
            leases=self.pool.lease_counts,
            failures=self.manager.failures,
        )
        return status_page(sources, links, admins, self.clock)

    def stop(self) -> None:
        for door in (self._ec2_server, self._agent_server):
            if door is not None:
                door.stop()
        self._ec2_server = self._agent_server = None
        if self._server is not None:
            self._server.stop()
            self._server = None
            self.leases.stop()
            self.reservations.stop()
            self.context_sweeper.stop()
            self.reconciler.stop()
            self.delivery.stop()
        self.manager.close()
        self.pool.close()
        self.store.close()
        if self._key_holder is not None:
            self._key_holder.close()


def _delivery_policy(config: NotificationConfig) -> DeliveryPolicy:
    return DeliveryPolicy(
        workers=config.workers,
        timeout=config.timeout_ms / 1000,
        attempts=config.attempts,
        retry=config.retry_ms / 1000,
        drop_after=config.drop_after,
    )


@dataclass(frozen=True)
class CredentialFiles:
    """Where the trust dir, host credential and grid-mapfile are: [security], else the dev CA's layout."""

    trust_dir: Path
    host_cert: Path
    host_key: Path
    gridmap: Path

    @classmethod
    def of(cls, config: Config) -> "CredentialFiles":
        security, dev = config.security, DevCA(config.service.state_dir / "security")
        found = cls(
            security.trust_dir or dev.trust_dir,
            security.host_cert or dev.host_cert,
            security.host_key or dev.host_key,
            gridmap_file(config),
        )
        missing = [str(path) for path in (found.trust_dir, found.host_cert, found.host_key) if not path.exists()]
        if missing:
            raise ConfigError(
                f"security needs a trust dir and host credential ({', '.join(missing)} missing): "
                "run `vws-admin ca init` for a development CA, configure [security], or pass --insecure"
            )
        return found

    def host_credential(self) -> Credential:
        try:
            return Credential.load(self.host_cert, self.host_key)
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"{self.host_cert}: cannot load the host credential (key {self.host_key}): "
                f"{getattr(exc, 'strerror', None) or exc}"
            ) from None


def gridmap_file(config: Config) -> Path:
    return config.security.gridmap or DevCA(config.service.state_dir / "security").gridmap


def _gatekeeper(
    config: Config, clock: Clock, gridmap: GridMap, replay_cache: StoredReplayCache
) -> tuple[Gatekeeper, KeyHolder | None]:
    """OpenGate only when ``--insecure`` says so; else signed messages (GSI Secure Message), or,
    with ``require_signature = no`` and ``tls = yes``, the TLS client identity (GSI Transport).
    Signed replies are signed by a ``KeyHolder`` on the CPUs the service's threads leave free."""
    if config.service.insecure:
        return OpenGate(), None
    security, found = config.security, CredentialFiles.of(config)
    admins = frozenset(security.admin_dns)
    if not security.require_signature:  # with tls = yes: Config makes sure of it
        return TransportGate(gridmap, admins), None
    try:
        signature_methods, digest_methods = methods(security.signature_hashes)
    except ValueError as unknown:
        raise ConfigError(f"[security] signature_hashes: {unknown}") from None
    policy = SecurityPolicy(signature_methods, digest_methods, skew=timedelta(seconds=security.clock_skew_seconds))
    verifier = MessageVerifier(TrustStore(found.trust_dir), clock, policy)
    credential, spare = found.host_credential(), affinity.spare()
    holder = KeyHolder(credential.key, spare) if spare and isinstance(credential.key, rsa.RSAPrivateKey) else None
    signer = MessageSigner(credential, clock, sign=holder.sign if holder else None)
    return SignedGate(verifier, signer, gridmap, admins, replay_cache), holder


def service_limits(service: ServiceConfig) -> Limits:
    """The HTTP front's limits, as [service] sets them."""
    return Limits(
        max_header_bytes=service.max_header_kb * 1024,
        max_body_bytes=service.max_body_kb * 1024,
        header_timeout=service.request_header_timeout_ms / 1000,
        body_timeout=service.request_body_timeout_ms / 1000,
        idle_timeout=service.keepalive_timeout_ms / 1000,
        backlog=service.backlog,
        workers=service.threads,
        max_connections=service.max_connections,
    )


def _transport(config: Config, clock: Clock) -> GsiTransport | None:
    if config.service.insecure or not config.security.tls:
        return None
    found = CredentialFiles.of(config)
    validator = ChainValidator(TrustStore(found.trust_dir), clock)
    return GsiTransport(TransportSecurity(str(found.host_cert), str(found.host_key), str(found.trust_dir), validator))


def _agents_shut_out(config: Config) -> str | None:
    """Why guests' context agents could not reach this service, or None. Under tls = yes the main
    port asks every client for a certificate, which agents have not: they need agent_listen (or
    an agent_url the operator serves them by some other way)."""
    service = config.service
    if config.security.tls and not (service.agent_listen or service.agent_url):
        return (
            "context agents cannot reach this service: with [security] tls = yes they need"
            " [service] agent_listen, a port of their own without client certificates"
        )
    return None
