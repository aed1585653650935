"""Precomputed graph queries over a System: adjacency, trust, boundaries, reachability and data.

Threat conditions ask the same questions of thousands of elements ("is it reachable from an
untrusted element?", "what data does it handle?"). :class:`SystemGraph` answers each from an index
built once, on first use, by one breadth-first search or one pass over the flows, so evaluating a
condition is a lookup and never a fresh traversal.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property

from modelward.system.model import Boundary, DataAsset, Element, Flow, System
from modelward.system.vocabulary import Authentication, DfdKind, TrustLevel

__all__ = ["ENCRYPTED_PROTOCOLS", "Reach", "SystemGraph"]

#: Protocols that encrypt (and integrity-protect) what they carry; a flow using one counts as encrypted.
ENCRYPTED_PROTOCOLS = frozenset({"https", "tls", "mtls", "grpcs", "wss", "sftp", "ftps", "ssh"})


_TRUST_RANK = {level: i for i, level in enumerate(TrustLevel)}


@dataclass(frozen=True)
class Reach:
    """The result of a multi-source search: for each reached node, the hop it came from and its depth.

    Nodes count as reached only over at least one flow, so a source is reached only when some path
    leads back into it. ``path(node)`` rebuilds the shortest chain from the nearest source.
    """

    hops: dict[str, tuple[str, int]]

    def __contains__(self, node: object) -> bool:
        """Whether a node was reached."""
        return node in self.hops

    def path(self, node: str) -> tuple[str, ...] | None:
        """The chain ``(source, ..., node)``, or None when ``node`` was not reached."""
        if node not in self.hops:
            return None
        chain = [node]
        current = node
        while True:
            parent, depth = self.hops[current]
            chain.append(parent)
            if depth <= 1:
                break
            current = parent
        chain.reverse()
        return tuple(chain)

    def origin(self, node: str) -> str | None:
        """The source a node was reached from (first element of its path)."""
        chain = self.path(node)
        return chain[0] if chain else None


class SystemGraph:
    """Read-only indexes over one :class:`System`; build one per system and share it."""

    def __init__(self, system: System) -> None:
        """Index elements, flows, boundaries and assets; derived indexes are built on first use."""
        self.system = system
        self.elements: dict[str, Element] = {e.id: e for e in system.elements}
        self.flows: dict[str, Flow] = {f.fid: f for f in system.flows}
        self.boundaries: dict[str, Boundary] = {b.id: b for b in system.boundaries}
        self.assets: dict[str, DataAsset] = {d.id: d for d in system.data}
        self._incoming: dict[str, list[Flow]] = {eid: [] for eid in self.elements}
        self._outgoing: dict[str, list[Flow]] = {eid: [] for eid in self.elements}
        for flow in system.flows:
            self._outgoing.setdefault(flow.source, []).append(flow)
            self._incoming.setdefault(flow.target, []).append(flow)
        self._upstream: dict[str, frozenset[str]] = {}
        self._downstream: dict[str, frozenset[str]] = {}

    # --- adjacency -----------------------------------------------------
    def incoming(self, element_id: str) -> list[Flow]:
        """Flows that end at an element, in document order."""
        return self._incoming.get(element_id, [])

    def outgoing(self, element_id: str) -> list[Flow]:
        """Flows that start at an element, in document order."""
        return self._outgoing.get(element_id, [])

    @cached_property
    def _predecessors(self) -> dict[str, tuple[str, ...]]:
        """Distinct sources of each element's incoming flows."""
        return {eid: tuple(dict.fromkeys(f.source for f in flows)) for eid, flows in self._incoming.items()}

    @cached_property
    def _successors(self) -> dict[str, tuple[str, ...]]:
        """Distinct targets of each element's outgoing flows."""
        return {eid: tuple(dict.fromkeys(f.target for f in flows)) for eid, flows in self._outgoing.items()}

    def predecessors(self, element_id: str) -> tuple[str, ...]:
        """Distinct elements with a flow into ``element_id``."""
        return self._predecessors.get(element_id, ())

    def successors(self, element_id: str) -> tuple[str, ...]:
        """Distinct elements that ``element_id`` has a flow to."""
        return self._successors.get(element_id, ())

    # --- trust and boundaries -----------------------------------------
    @cached_property
    def _trust(self) -> dict[str, TrustLevel]:
        """Effective trust of every element, computed once."""
        trust: dict[str, TrustLevel] = {}
        for eid, element in self.elements.items():
            if element.trust is not None:
                trust[eid] = element.trust
            elif element.boundary is not None and element.boundary in self.boundaries:
                trust[eid] = self.boundaries[element.boundary].trust
            elif element.kind is DfdKind.EXTERNAL_ENTITY:
                trust[eid] = TrustLevel.UNTRUSTED
            else:
                trust[eid] = TrustLevel.INTERNAL
        return trust

    def effective_trust(self, element_id: str) -> TrustLevel:
        """Explicit ``trust``, else the innermost boundary's, else untrusted (entities) or internal."""
        return self._trust[element_id]

    def flow_trust(self, flow_id: str) -> TrustLevel:
        """A flow is as trusted as the less trusted of its two ends."""
        flow = self.flows[flow_id]
        a, b = self._trust[flow.source], self._trust[flow.target]
        return a if _TRUST_RANK[a] <= _TRUST_RANK[b] else b

    @cached_property
    def _chains(self) -> dict[str, tuple[str, ...]]:
        """Each boundary's chain of enclosing boundaries, innermost first (cycles cut)."""
        chains: dict[str, tuple[str, ...]] = {}
        for bid in self.boundaries:
            chain: list[str] = []
            current: str | None = bid
            while current is not None and current in self.boundaries and current not in chain:
                chain.append(current)
                current = self.boundaries[current].parent
            chains[bid] = tuple(chain)
        return chains

    def boundary_chain(self, element_id: str) -> tuple[str, ...]:
        """The boundaries an element sits in, innermost first (empty when it declares none)."""
        boundary = self.elements[element_id].boundary
        return self._chains.get(boundary, ()) if boundary is not None else ()

    def innermost_boundary(self, element_id: str) -> str | None:
        """The boundary an element declares, or None."""
        return self.elements[element_id].boundary

    @cached_property
    def _crossing(self) -> dict[str, bool]:
        """Whether each flow crosses a boundary."""
        return {
            fid: self.elements[f.source].boundary != self.elements[f.target].boundary for fid, f in self.flows.items()
        }

    def crosses_boundary(self, flow_id: str) -> bool:
        """True when a flow's source and target sit in different (innermost) trust boundaries."""
        return self._crossing[flow_id]

    def crossing_flows(self) -> list[str]:
        """Ids of every flow that crosses a trust boundary, in document order."""
        return [fid for fid, crosses in self._crossing.items() if crosses]

    @cached_property
    def _entered_across(self) -> dict[str, Flow | None]:
        """The first boundary-crossing incoming flow of each element."""
        first: dict[str, Flow | None] = dict.fromkeys(self.elements)
        for fid, flow in self.flows.items():
            if self._crossing[fid] and first.get(flow.target) is None:
                first[flow.target] = flow
        return first

    def crossing_into(self, element_id: str) -> Flow | None:
        """The first incoming flow of an element that crosses a boundary, or None."""
        return self._entered_across.get(element_id)

    # --- authentication and encryption --------------------------------
    def element_authenticated(self, element_id: str) -> bool:
        """An element authenticates its callers: ``authentication`` is set and not ``none``."""
        auth = self.elements[element_id].authentication
        return auth is not None and auth is not Authentication.NONE

    def flow_authenticated(self, flow_id: str) -> bool:
        """A flow is authenticated when it says so or its target authenticates callers."""
        flow = self.flows[flow_id]
        return flow.authenticated is True or self.element_authenticated(flow.target)

    def flow_encrypted(self, flow_id: str) -> bool:
        """``encrypted: true``, or an encrypting protocol unless ``encrypted: false`` says otherwise."""
        flow = self.flows[flow_id]
        if flow.encrypted is not None:
            return flow.encrypted
        return flow.protocol is not None and flow.protocol.strip().lower() in ENCRYPTED_PROTOCOLS

    # --- reachability --------------------------------------------------
    def reach(
        self,
        sources: Iterable[str],
        *,
        forward: bool = True,
        passable: Callable[[Flow], bool] | None = None,
    ) -> Reach:
        """Multi-source breadth-first search along flows (or against them) over at least one hop."""
        hops: dict[str, tuple[str, int]] = {}
        adjacency = self._outgoing if forward else self._incoming
        queue: deque[tuple[str, int]] = deque()
        for source in dict.fromkeys(sources):
            self._expand(source, 0, adjacency, forward, passable, hops, queue)
        while queue:
            node, depth = queue.popleft()
            self._expand(node, depth, adjacency, forward, passable, hops, queue)
        return Reach(hops)

    @staticmethod
    def _expand(
        node: str,
        depth: int,
        adjacency: dict[str, list[Flow]],
        forward: bool,
        passable: Callable[[Flow], bool] | None,
        hops: dict[str, tuple[str, int]],
        queue: deque[tuple[str, int]],
    ) -> None:
        """Queue the unvisited neighbours of one node (one BFS step)."""
        for flow in adjacency.get(node, ()):
            nxt = flow.target if forward else flow.source
            if nxt in hops or (passable is not None and not passable(flow)):
                continue
            hops[nxt] = (node, depth + 1)
            queue.append((nxt, depth + 1))

    @cached_property
    def untrusted(self) -> tuple[str, ...]:
        """Elements whose effective trust is untrusted, in document order."""
        return tuple(eid for eid, trust in self._trust.items() if trust is TrustLevel.UNTRUSTED)

    @cached_property
    def _from_untrusted(self) -> Reach:
        """One search from every untrusted element."""
        return self.reach(self.untrusted)

    @cached_property
    def _from_untrusted_anonymously(self) -> Reach:
        """One search from every untrusted element over unauthenticated flows only."""
        return self.reach(self.untrusted, passable=lambda flow: not self.flow_authenticated(flow.fid))

    def untrusted_path(self, element_id: str) -> tuple[str, ...] | None:
        """Shortest chain of flows from an untrusted element to this one, or None."""
        return self._from_untrusted.path(element_id)

    def anonymous_path(self, element_id: str) -> tuple[str, ...] | None:
        """Shortest chain from an untrusted element over flows none of which is authenticated, or None."""
        return self._from_untrusted_anonymously.path(element_id)

    def reachable_from_untrusted(self, element_id: str) -> bool:
        """Some chain of flows leads from an untrusted element to this one."""
        return element_id in self._from_untrusted

    def exposed_to_untrusted(self, element_id: str) -> str | None:
        """An untrusted element with a flow straight into this one, or None."""
        for source in self.predecessors(element_id):
            if self._trust[source] is TrustLevel.UNTRUSTED:
                return source
        return None

    @cached_property
    def _lowest_upstream(self) -> dict[str, TrustLevel]:
        """Lowest trust reaching each element: one search per trust level, lowest first."""
        lowest: dict[str, TrustLevel] = {}
        for level in TrustLevel:  # ascending: the first level that reaches a node is its lowest
            starts = [eid for eid, trust in self._trust.items() if trust is level]
            for eid in starts:
                lowest.setdefault(eid, level)
            for eid in self.reach(starts).hops:
                lowest.setdefault(eid, level)
        return lowest

    def lowest_upstream_trust(self, element_id: str) -> TrustLevel:
        """The lowest effective trust among this element and every element with a path to it."""
        return self._lowest_upstream[element_id]

    def upstream(self, element_id: str) -> frozenset[str]:
        """Every element with a chain of flows to this one (memoised per element)."""
        found = self._upstream.get(element_id)
        if found is None:
            found = frozenset(self.reach([element_id], forward=False).hops)
            self._upstream[element_id] = found
        return found

    def downstream(self, element_id: str) -> frozenset[str]:
        """Every element this one has a chain of flows to (memoised per element)."""
        found = self._downstream.get(element_id)
        if found is None:
            found = frozenset(self.reach([element_id]).hops)
            self._downstream[element_id] = found
        return found

    # --- data ----------------------------------------------------------
    @cached_property
    def _element_data(self) -> dict[str, tuple[DataAsset, ...]]:
        """Assets each element handles, its own and its flows', in first-seen order."""
        handled: dict[str, dict[str, None]] = {eid: dict.fromkeys(e.data) for eid, e in self.elements.items()}
        for flow in self.flows.values():
            for end in (flow.source, flow.target):
                bucket = handled.setdefault(end, {})
                for asset in flow.data:
                    bucket.setdefault(asset, None)
        return {eid: tuple(self.assets[a] for a in ids if a in self.assets) for eid, ids in handled.items()}

    def data_of(self, element_id: str) -> tuple[DataAsset, ...]:
        """Data an element handles: its own ``data`` plus the data on its incoming and outgoing flows."""
        return self._element_data.get(element_id, ())

    @cached_property
    def _flow_data(self) -> dict[str, tuple[DataAsset, ...]]:
        """Assets each flow carries."""
        return {fid: tuple(self.assets[a] for a in f.data if a in self.assets) for fid, f in self.flows.items()}

    def flow_data(self, flow_id: str) -> tuple[DataAsset, ...]:
        """Data a flow carries."""
        return self._flow_data[flow_id]

    def training_data(self, element_id: str) -> tuple[DataAsset, ...]:
        """The assets in an element's ``model.trained_on`` (empty when it has no model block)."""
        model = self.elements[element_id].model
        if model is None:
            return ()
        return tuple(self.assets[a] for a in model.trained_on if a in self.assets)

    @cached_property
    def _suppliers(self) -> dict[str, tuple[str, ...]]:
        """For each asset, the elements that send it or list it."""
        suppliers: dict[str, dict[str, None]] = {}
        for flow in self.flows.values():
            for asset in flow.data:
                suppliers.setdefault(asset, {}).setdefault(flow.source, None)
        for eid, element in self.elements.items():
            for asset in element.data:
                suppliers.setdefault(asset, {}).setdefault(eid, None)
        return {asset: tuple(ids) for asset, ids in suppliers.items()}

    def suppliers_of(self, asset_id: str) -> tuple[str, ...]:
        """Elements that send an asset on some flow or list it in their ``data``."""
        return self._suppliers.get(asset_id, ())

    def training_sources(self, element_id: str) -> tuple[str, ...]:
        """Elements that supply any asset the element's model is trained on (the element itself excluded)."""
        found: dict[str, None] = {}
        for asset in self.training_data(element_id):
            for supplier in self.suppliers_of(asset.id):
                if supplier != element_id:
                    found.setdefault(supplier, None)
        return tuple(found)
