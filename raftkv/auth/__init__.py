"""etcd 3.4's authentication and role-based access control.

``store`` keeps users, roles and permissions in the backend and applies the Auth* Raft
requests; ``perms`` merges a user's key-range permissions and checks a key or range against
them; ``tokens`` issues and reads simple tokens and JWTs. Nothing here knows a wire format or
the member: the server gives the store its backend and token provider.
"""

from raftkv.auth.store import AuthStore, hash_password, is_auth_request, password_matches
from raftkv.auth.tokens import AuthInfo, TokenProvider, new_token_provider

__all__ = [
    "AuthInfo",
    "AuthStore",
    "TokenProvider",
    "hash_password",
    "is_auth_request",
    "new_token_provider",
    "password_matches",
]
