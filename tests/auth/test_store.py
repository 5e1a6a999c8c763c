"""The auth store over a real page file: etcd 3.4's user, role and root rules, the auth
revision, permission checks as the applier makes them, persistence across a reopen and in a
snapshot's db copy, and the tokens a change invalidates."""

from __future__ import annotations

import pytest

from raftkv import errors
from raftkv.auth import AuthInfo, AuthStore, hash_password, password_matches
from raftkv.auth.store import DEFAULT_BCRYPT_COST, valid_bcrypt_cost
from raftkv.auth.tokens import NO_USER, SimpleTokens
from raftkv.backend import Backend
from raftkv.pb import rpc
from raftkv.pb.auth import Permission, PermissionType, UserAddOptions

COST = 4


def _open(path) -> tuple[Backend, AuthStore]:
    be = Backend.open(str(path))
    return be, AuthStore(be, SimpleTokens(), COST)


@pytest.fixture
def env(tmp_path):
    be, st = _open(tmp_path / "db")
    yield st, be, tmp_path
    be.close()


def apply(st: AuthStore, index: int = 1, caller: AuthInfo | None = None, **fields):
    r = rpc.InternalRaftRequest(**fields)
    st.check_request(caller, r, lambda _lease: [])
    return st.apply(r, index)


def add_user(st: AuthStore, name: str, password: str = "pw", *roles: str) -> None:
    hashed = hash_password(password, COST)
    apply(st, auth_user_add=rpc.AuthUserAddRequest(name=name, hashedPassword=hashed))
    for role in roles:
        apply(st, auth_user_grant_role=rpc.AuthUserGrantRoleRequest(user=name, role=role))


def grant(st: AuthStore, role: str, kind: PermissionType, key: bytes, end: bytes = b"") -> None:
    perm = Permission(permType=kind, key=key, range_end=end)
    apply(st, auth_role_grant_permission=rpc.AuthRoleGrantPermissionRequest(name=role, perm=perm))


def setup_users(st: AuthStore) -> None:
    add_user(st, "root", "rootpw", "root")
    apply(st, auth_role_add=rpc.AuthRoleAddRequest(name="rw"))
    grant(st, "rw", PermissionType.READWRITE, b"w/", b"w0")
    apply(st, auth_role_add=rpc.AuthRoleAddRequest(name="ro"))
    grant(st, "ro", PermissionType.READ, b"r/", b"r0")
    add_user(st, "u", "upw", "rw", "ro")


def test_a_new_store_starts_at_revision_one_and_every_change_bumps_it(env):
    st, _be, _ = env
    assert (st.revision, st.enabled) == (1, False)
    add_user(st, "root", "x")
    assert st.revision == 2
    apply(st, auth_user_grant_role=rpc.AuthUserGrantRoleRequest(user="root", role="root"))
    apply(st, auth_user_grant_role=rpc.AuthUserGrantRoleRequest(user="root", role="root"))
    assert st.revision == 3  # granting a role a user has changes nothing
    apply(st, auth_enable=rpc.AuthEnableRequest())
    assert (st.revision, st.enabled) == (3, True)  # etcd's AuthEnable keeps the revision
    apply(st, auth_disable=rpc.AuthDisableRequest())
    assert (st.revision, st.enabled) == (4, False)


def test_enable_needs_a_root_user_with_the_root_role(env):
    st, _be, _ = env
    with pytest.raises(errors.EtcdError) as e:
        apply(st, auth_enable=rpc.AuthEnableRequest())
    assert e.value is errors.ErrRootUserNotExist
    add_user(st, "root", "x")
    with pytest.raises(errors.EtcdError) as e:
        apply(st, auth_enable=rpc.AuthEnableRequest())
    assert e.value is errors.ErrRootRoleNotExist


def test_root_rules_once_enabled(env):
    st, _be, _ = env
    setup_users(st)
    apply(st, auth_enable=rpc.AuthEnableRequest())
    root = AuthInfo("root", st.revision)
    for fields in (
        {"auth_user_delete": rpc.AuthUserDeleteRequest(name="root")},
        {"auth_user_revoke_role": rpc.AuthUserRevokeRoleRequest(name="root", role="root")},
        {"auth_role_delete": rpc.AuthRoleDeleteRequest(role="root")},
    ):
        with pytest.raises(errors.EtcdError) as e:
            apply(st, caller=root, **fields)
        assert e.value is errors.ErrInvalidAuthMgmt
    u = AuthInfo("u", st.revision)
    with pytest.raises(errors.EtcdError) as e:
        apply(st, caller=u, auth_user_list=rpc.AuthUserListRequest())
    assert e.value is errors.ErrPermissionDenied
    with pytest.raises(errors.EtcdError) as e:
        apply(st, caller=NO_USER, auth_role_list=rpc.AuthRoleListRequest())
    assert e.value is errors.ErrUserEmpty
    with pytest.raises(errors.EtcdError) as e:
        apply(st, caller=AuthInfo("ghost", st.revision), auth_user_list=rpc.AuthUserListRequest())
    assert e.value is errors.ErrUserNotFound
    # a user may read itself and the roles it has, nothing else
    got = apply(st, caller=u, auth_user_get=rpc.AuthUserGetRequest(name="u"))
    assert got.roles == ["ro", "rw"]
    assert apply(st, caller=u, auth_role_get=rpc.AuthRoleGetRequest(role="rw")).perm
    with pytest.raises(errors.EtcdError):
        apply(st, caller=u, auth_user_get=rpc.AuthUserGetRequest(name="root"))
    with pytest.raises(errors.EtcdError):
        apply(st, caller=u, auth_role_get=rpc.AuthRoleGetRequest(role="root"))


def test_user_and_role_errors(env):
    st, _be, _ = env
    setup_users(st)
    cases = [
        ({"auth_user_add": rpc.AuthUserAddRequest(name="u")}, errors.ErrUserAlreadyExist),
        ({"auth_user_add": rpc.AuthUserAddRequest(name="")}, errors.ErrUserEmpty),
        ({"auth_role_add": rpc.AuthRoleAddRequest(name="rw")}, errors.ErrRoleAlreadyExist),
        ({"auth_role_add": rpc.AuthRoleAddRequest(name="")}, errors.ErrRoleEmpty),
        ({"auth_user_delete": rpc.AuthUserDeleteRequest(name="x")}, errors.ErrUserNotFound),
        ({"auth_role_delete": rpc.AuthRoleDeleteRequest(role="x")}, errors.ErrRoleNotFound),
        (
            {"auth_user_grant_role": rpc.AuthUserGrantRoleRequest(user="u", role="x")},
            errors.ErrRoleNotFound,
        ),
        (
            {"auth_user_revoke_role": rpc.AuthUserRevokeRoleRequest(name="u", role="root")},
            errors.ErrRoleNotGranted,
        ),
        (
            {"auth_role_revoke_permission": rpc.AuthRoleRevokePermissionRequest(role="rw")},
            errors.ErrPermissionNotGranted,
        ),
    ]
    for fields, err in cases:
        rev = st.revision
        with pytest.raises(errors.EtcdError) as e:
            apply(st, **fields)
        assert e.value is err, fields
        assert st.revision == rev  # a refused change changes nothing


def test_permission_checks(env):
    st, _be, _ = env
    setup_users(st)
    apply(st, auth_enable=rpc.AuthEnableRequest())
    u, root = AuthInfo("u", st.revision), AuthInfo("root", st.revision)
    st.is_range_permitted(u, b"r/1", b"")
    st.is_range_permitted(u, b"w/", b"w0")
    st.is_put_permitted(u, b"w/1")
    st.is_put_permitted(root, b"anything")
    st.is_admin_permitted(root)
    for check in (
        lambda: st.is_put_permitted(u, b"r/1"),
        lambda: st.is_range_permitted(u, b"r/", b"w0"),  # a gap between the two prefixes
        lambda: st.is_admin_permitted(u),
        lambda: st.is_range_permitted(AuthInfo("ghost", st.revision), b"r/1", b""),
    ):
        with pytest.raises(errors.EtcdError) as e:
            check()
        assert e.value is errors.ErrPermissionDenied
    with pytest.raises(errors.EtcdError) as e:
        st.is_range_permitted(NO_USER, b"r/1", b"")
    assert e.value is errors.ErrUserEmpty
    # the member itself (no caller) passes everything
    st.is_put_permitted(None, b"r/1")


def test_a_change_after_the_token_was_judged_wins(env):
    st, _be, _ = env
    setup_users(st)
    apply(st, auth_enable=rpc.AuthEnableRequest())
    u = AuthInfo("u", st.revision)
    put = rpc.InternalRaftRequest(put=rpc.PutRequest(key=b"w/1"))
    st.check_request(u, put, lambda _l: [])
    apply(st, auth_role_revoke_permission=rpc.AuthRoleRevokePermissionRequest(
        role="rw", key=b"w/", range_end=b"w0"
    ))  # fmt: skip
    with pytest.raises(errors.EtcdError) as e:
        st.check_request(u, put, lambda _l: [])
    assert e.value is errors.ErrAuthOldRevision
    with pytest.raises(errors.EtcdError) as e:
        st.check_request(AuthInfo("u", st.revision), put, lambda _l: [])
    assert e.value is errors.ErrPermissionDenied


def test_requests_as_the_applier_checks_them(env):
    st, _be, _ = env
    setup_users(st)
    apply(st, auth_enable=rpc.AuthEnableRequest())
    u = AuthInfo("u", st.revision)
    lease_keys = {7: [b"r/1"], 8: [b"w/9"]}.get

    def check(**fields) -> errors.EtcdError | None:
        try:
            st.check_request(u, rpc.InternalRaftRequest(**fields), lambda i: lease_keys(i, []))
        except errors.EtcdError as e:
            return e
        return None

    denied = errors.ErrPermissionDenied
    assert check(put=rpc.PutRequest(key=b"w/1", lease=8)) is None
    assert check(put=rpc.PutRequest(key=b"w/1", lease=7)) is denied  # r/1 rides that lease
    assert check(put=rpc.PutRequest(key=b"w/1", prev_kv=True)) is None
    assert check(lease_revoke=rpc.LeaseRevokeRequest(ID=7)) is denied
    assert check(lease_revoke=rpc.LeaseRevokeRequest(ID=8)) is None
    assert check(delete_range=rpc.DeleteRangeRequest(key=b"w/", range_end=b"w0")) is None
    assert check(delete_range=rpc.DeleteRangeRequest(key=b"r/1")) is denied
    inner = rpc.TxnRequest(success=[rpc.RequestOp(request_put=rpc.PutRequest(key=b"r/1"))])
    nested = rpc.TxnRequest(success=[rpc.RequestOp(request_txn=inner)])
    assert check(txn=nested) is denied
    cmp = rpc.TxnRequest(compare=[rpc.Compare(key=b"x")])
    assert check(txn=cmp) is denied
    failure = rpc.TxnRequest(failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=b"x"))])
    assert check(txn=failure) is denied
    assert check(compaction=rpc.CompactionRequest(revision=1)) is None  # (no check in etcd 3.4)


def test_role_delete_takes_it_from_every_user_and_its_permissions_go(env):
    st, _be, _ = env
    setup_users(st)
    apply(st, auth_enable=rpc.AuthEnableRequest())
    apply(st, auth_role_delete=rpc.AuthRoleDeleteRequest(role="ro"))
    assert st.user("u").roles == ["rw"]
    with pytest.raises(errors.EtcdError):
        st.is_range_permitted(AuthInfo("u", st.revision), b"r/1", b"")


def test_passwords_are_bcrypt_hashes_and_checked_against_them(env):
    st, _be, _ = env
    setup_users(st)
    stored = st.user("u").password
    assert stored.startswith(b"$2b$04$") and b"upw" not in stored
    with pytest.raises(errors.EtcdError) as e:
        st.password_hash("u")
    assert e.value is errors.ErrAuthNotEnabled
    apply(st, auth_enable=rpc.AuthEnableRequest())
    hashed, rev = st.password_hash("u")
    assert rev == st.revision
    assert password_matches("upw", hashed) and not password_matches("nope", hashed)
    with pytest.raises(errors.EtcdError) as e:
        st.password_hash("ghost")
    assert e.value is errors.ErrAuthFailed
    apply(st, auth_user_add=rpc.AuthUserAddRequest(
        name="np", options=UserAddOptions(no_password=True)
    ))  # fmt: skip
    with pytest.raises(errors.EtcdError) as e:
        st.password_hash("np")
    assert e.value is errors.ErrNoPasswordUser
    assert valid_bcrypt_cost(3) == valid_bcrypt_cost(32) == DEFAULT_BCRYPT_COST
    assert valid_bcrypt_cost(12) == 12


def test_persisted_across_reopen_and_in_a_snapshots_copy(env):
    st, be, tmp = env
    setup_users(st)
    apply(st, auth_enable=rpc.AuthEnableRequest())
    rev = st.revision
    be.commit()
    with open(tmp / "snap.db", "wb") as f:
        be.write_to(f)
    be.close()
    for path in (tmp / "db", tmp / "snap.db"):
        be2, st2 = _open(path)
        try:
            assert (st2.enabled, st2.revision) == (True, rev)
            assert st2.user("u").roles == ["ro", "rw"]
            st2.is_put_permitted(AuthInfo("u", rev), b"w/1")
            with pytest.raises(errors.EtcdError):
                st2.is_put_permitted(AuthInfo("u", rev), b"r/1")
        finally:
            be2.close()


async def test_tokens_die_with_their_user_its_password_and_auth_itself(tmp_path):
    be, st = _open(tmp_path / "db")
    try:
        setup_users(st)
        apply(st, auth_enable=rpc.AuthEnableRequest())
        add_user(st, "v", "vpw")

        def login(name: str, index: int) -> str:
            a = rpc.InternalAuthenticateRequest(name=name, simple_token=st.tokens.gen_prefix())
            return apply(st, index, authenticate=a).token

        tu, tv, troot = login("u", 50), login("v", 51), login("root", 52)
        assert (await st.auth_info(tu)).username == "u"
        apply(st, auth_user_delete=rpc.AuthUserDeleteRequest(name="v"))
        with pytest.raises(errors.EtcdError) as e:
            await st.auth_info(tv)
        assert e.value is errors.ErrInvalidAuthToken
        apply(st, auth_user_change_password=rpc.AuthUserChangePasswordRequest(
            name="u", hashedPassword=hash_password("new", COST)
        ))  # fmt: skip
        with pytest.raises(errors.EtcdError):
            await st.auth_info(tu)
        assert (await st.auth_info(troot)).username == "root"
        apply(st, auth_disable=rpc.AuthDisableRequest())
        with pytest.raises(errors.EtcdError):
            await st.auth_info(troot)
        assert await st.auth_info(None) is None
    finally:
        be.close()
