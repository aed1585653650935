"""SystemGraph: adjacency, trust, boundaries, reachability with paths, data and training sources."""

from __future__ import annotations

from modelward.system.graph import SystemGraph
from modelward.system.loader import parse_system
from modelward.system.vocabulary import TrustLevel

SYSTEM = """\
name: graph test
boundaries:
  - {id: internet, trust: untrusted}
  - {id: cloud, trust: internal}
  - {id: vpc, parent: cloud, trust: internal}
  - {id: vault, parent: vpc, trust: privileged}
  - {id: vendor, trust: partner}
data:
  - {id: photos, personal: true, data_subjects: 5000, origin: user-supplied}
  - {id: labels, origin: crowdsourced}
  - {id: weights}
elements:
  - {id: user, type: end-user, boundary: internet}
  - {id: ghost, type: end-user}
  - {id: partner-feed, type: data-provider, boundary: vendor}
  - {id: api, type: api, boundary: cloud, authentication: oauth2}
  - {id: svc, type: service, boundary: vpc}
  - {id: model, type: model, boundary: vpc, model: {trained_on: [photos, labels]}}
  - {id: store, type: dataset, boundary: vault, data: [labels]}
  - {id: admin-tool, type: service, boundary: vault, trust: privileged}
  - {id: lonely, type: process}
flows:
  - {from: user, to: api, data: [photos], protocol: HTTPS}
  - {from: api, to: svc, data: [photos]}
  - {from: svc, to: model, data: [photos], encrypted: false, protocol: https}
  - {from: model, to: svc}
  - {id: feed, from: partner-feed, to: store, data: [labels], authenticated: true}
  - {from: store, to: model, data: [labels], protocol: grpcs}
  - {from: admin-tool, to: store}
  - {id: direct, from: ghost, to: svc}
"""


def graph() -> SystemGraph:
    return SystemGraph(parse_system(SYSTEM))


def test_adjacency_keeps_document_order_and_deduplicates_neighbours() -> None:
    g = graph()
    assert [f.fid for f in g.incoming("svc")] == ["api-to-svc", "model-to-svc", "direct"]
    assert [f.fid for f in g.outgoing("svc")] == ["svc-to-model"]
    assert g.predecessors("svc") == ("api", "model", "ghost")
    assert g.successors("store") == ("model",)
    assert g.predecessors("lonely") == () and g.successors("lonely") == ()


def test_effective_trust_explicit_then_boundary_then_kind_default() -> None:
    g = graph()
    assert g.effective_trust("admin-tool") is TrustLevel.PRIVILEGED  # explicit
    assert g.effective_trust("store") is TrustLevel.PRIVILEGED  # innermost boundary 'vault'
    assert g.effective_trust("partner-feed") is TrustLevel.PARTNER
    assert g.effective_trust("ghost") is TrustLevel.UNTRUSTED  # entity without boundary
    assert g.effective_trust("lonely") is TrustLevel.INTERNAL  # process without boundary
    assert g.flow_trust("feed") is TrustLevel.PARTNER  # lower end


def test_boundary_chain_is_innermost_first() -> None:
    g = graph()
    assert g.boundary_chain("store") == ("vault", "vpc", "cloud")
    assert g.boundary_chain("api") == ("cloud",)
    assert g.boundary_chain("lonely") == ()


def test_crossing_uses_innermost_boundaries() -> None:
    g = graph()
    assert g.crosses_boundary("user-to-api")
    assert g.crosses_boundary("api-to-svc")  # cloud -> vpc (nested, still different)
    assert not g.crosses_boundary("svc-to-model")  # both in vpc
    assert g.crosses_boundary("direct")  # no boundary -> vpc
    assert "svc-to-model" not in g.crossing_flows()
    crossing = g.crossing_into("svc")
    assert crossing is not None and crossing.fid == "api-to-svc"
    assert g.crossing_into("user") is None


def test_untrusted_reachability_keeps_the_shortest_path() -> None:
    g = graph()
    assert g.untrusted == ("user", "ghost")
    assert g.untrusted_path("model") == ("ghost", "svc", "model")
    assert g.untrusted_path("api") == ("user", "api")
    assert g.untrusted_path("store") is None  # only partner and privileged writers
    assert g.untrusted_path("user") is None  # nothing flows into the user
    assert g.reachable_from_untrusted("svc")
    assert not g.reachable_from_untrusted("lonely")
    assert g.exposed_to_untrusted("svc") == "ghost"
    assert g.exposed_to_untrusted("model") is None


def test_anonymous_path_stops_at_authenticated_hops() -> None:
    g = graph()
    # user -> api is authenticated (api declares oauth2) but ghost -> svc is not.
    assert g.anonymous_path("api") is None
    assert g.anonymous_path("model") == ("ghost", "svc", "model")


def test_cycles_do_not_loop_path_reconstruction() -> None:
    system = parse_system(
        """\
name: loop
elements:
  - {id: u, type: end-user}
  - {id: a, type: api}
  - {id: b, type: service}
flows:
  - {from: u, to: a}
  - {from: a, to: b}
  - {from: b, to: u}
"""
    )
    g = SystemGraph(system)
    assert g.untrusted_path("u") == ("u", "a", "b", "u")
    assert g.untrusted_path("b") == ("u", "a", "b")


def test_lowest_upstream_trust_includes_the_element_itself() -> None:
    g = graph()
    assert g.lowest_upstream_trust("model") is TrustLevel.UNTRUSTED
    assert g.lowest_upstream_trust("store") is TrustLevel.PARTNER
    assert g.lowest_upstream_trust("admin-tool") is TrustLevel.PRIVILEGED
    assert g.lowest_upstream_trust("lonely") is TrustLevel.INTERNAL


def test_upstream_and_downstream_sets() -> None:
    g = graph()
    assert g.upstream("model") == {"user", "api", "svc", "model", "ghost", "store", "partner-feed", "admin-tool"}
    assert g.downstream("partner-feed") == {"store", "model", "svc"}
    assert g.upstream("user") == frozenset()
    assert g.upstream("model") is g.upstream("model")  # memoised


def test_data_handled_includes_flows_both_ways() -> None:
    g = graph()
    assert [a.id for a in g.data_of("svc")] == ["photos"]
    assert [a.id for a in g.data_of("store")] == ["labels"]
    assert [a.id for a in g.data_of("model")] == ["photos", "labels"]
    assert [a.id for a in g.flow_data("feed")] == ["labels"]
    assert g.data_of("lonely") == ()


def test_training_data_and_sources() -> None:
    g = graph()
    assert [a.id for a in g.training_data("model")] == ["photos", "labels"]
    assert g.training_data("svc") == ()
    # photos: sent by user, api, svc; labels: sent by partner-feed and store, and listed by store.
    assert g.training_sources("model") == ("user", "api", "svc", "partner-feed", "store")
    assert g.suppliers_of("weights") == ()


def test_flow_encryption_and_authentication() -> None:
    g = graph()
    assert g.flow_encrypted("user-to-api")  # protocol HTTPS, case-insensitive
    assert not g.flow_encrypted("svc-to-model")  # explicit false wins over https
    assert g.flow_encrypted("store-to-model")
    assert not g.flow_encrypted("api-to-svc")
    assert g.flow_authenticated("user-to-api")  # target authenticates
    assert g.flow_authenticated("feed")  # flow says so
    assert not g.flow_authenticated("direct")
    assert g.element_authenticated("api") and not g.element_authenticated("svc")


def test_reach_over_custom_sources_and_direction() -> None:
    g = graph()
    backwards = g.reach(["model"], forward=False)
    assert backwards.path("user") == ("model", "svc", "api", "user")
    assert backwards.origin("user") == "model"
    assert "lonely" not in backwards
