from metacontroller.apply import LAST_APPLIED, apply_update, merge, with_last_applied


def test_three_way_merge_keeps_foreign_fields_and_drops_removed_ones():
    observed = {"spec": {"replicas": 1, "mine": "old", "defaulted": "x", "gone": 1}}
    last = {"spec": {"replicas": 1, "mine": "old", "gone": 1}}
    desired = {"spec": {"replicas": 2, "mine": "new"}}
    assert merge(observed, last, desired) == {"spec": {"replicas": 2, "mine": "new", "defaulted": "x"}}


def test_lists_with_a_merge_key_merge_by_key_others_are_replaced():
    observed = {"ports": [{"port": 80, "nodePort": 30080}, {"port": 81}], "args": ["a", "b"]}
    last = {"ports": [{"port": 80}, {"port": 81}], "args": ["a", "b"]}
    desired = {"ports": [{"port": 80, "name": "http"}], "args": ["c"]}
    assert merge(observed, last, desired) == {"ports": [{"port": 80, "nodePort": 30080, "name": "http"}],
                                              "args": ["c"]}


def test_apply_update_reverts_status_and_system_metadata():
    observed = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "a", "uid": "u1", "generation": 3, "resourceVersion": "9"},
                "data": {"k": "1"}, "status": {"x": 1}}
    desired = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "uid": "forged"},
               "data": {"k": "2"}, "status": {"x": 2}}
    out = apply_update(observed, desired)
    assert out["data"] == {"k": "2"} and out["status"] == {"x": 1}
    assert out["metadata"]["uid"] == "u1" and out["metadata"]["generation"] == 3
    assert LAST_APPLIED in out["metadata"]["annotations"]


def test_reapplying_the_last_applied_object_changes_nothing():
    desired = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "1"}}
    observed = with_last_applied(desired)
    observed["metadata"].update({"uid": "u", "ownerReferences": [{"uid": "p"}]})
    assert apply_update(observed, desired) == observed


def test_as_last_applied_prefers_the_annotation_and_else_drops_what_the_server_owns():
    from metacontroller.apply import as_last_applied, last_applied_children

    sent = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "n"}, "data": {"v": "1"}}
    observed = apply_update({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "n"}}, sent)
    assert as_last_applied(observed) == sent
    bare = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"v": "2"}, "status": {"x": 1},
            "metadata": {"name": "c", "namespace": "n", "uid": "u", "resourceVersion": "9", "labels": {"a": "b"}}}
    assert as_last_applied(bare) == {"apiVersion": "v1", "kind": "ConfigMap", "data": {"v": "2"},
                                     "metadata": {"name": "c", "namespace": "n", "labels": {"a": "b"}}}
    assert last_applied_children({"B.v1": {"n/z": bare}, "A.v1": {}}) == [as_last_applied(bare)]
