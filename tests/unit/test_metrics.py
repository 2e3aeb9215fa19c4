from __future__ import annotations

from core.metrics import render


def test_prometheus_text() -> None:
    text = render(
        deploys_by_result={"healthy": 3, "failed": 1},
        deploy_seconds=[0.5, 2.0, 4.0, 700.0],
        peripheries_connected=1,
        peripheries_known=2,
        webhooks_by_verdict={"unauthorized": 2, "accepted": 1},
    )
    lines = text.splitlines()
    assert "# TYPE stackward_deploys_total counter" in lines
    assert 'stackward_deploys_total{result="failed"} 1' in lines
    assert 'stackward_deploys_total{result="healthy"} 3' in lines
    assert 'stackward_deploy_duration_seconds_bucket{le="1"} 1' in lines
    assert 'stackward_deploy_duration_seconds_bucket{le="5"} 3' in lines
    assert 'stackward_deploy_duration_seconds_bucket{le="600"} 3' in lines
    assert 'stackward_deploy_duration_seconds_bucket{le="+Inf"} 4' in lines
    assert "stackward_deploy_duration_seconds_count 4" in lines
    assert "stackward_deploy_duration_seconds_sum 706.5" in lines
    assert "stackward_peripheries_connected 1" in lines
    assert 'stackward_webhooks_total{verdict="unauthorized"} 2' in lines
    assert text.endswith("\n")
