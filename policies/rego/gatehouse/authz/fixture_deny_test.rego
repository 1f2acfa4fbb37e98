package gatehouse.policies.fixture_deny

default allow := false
