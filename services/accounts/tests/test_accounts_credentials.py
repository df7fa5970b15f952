from datetime import timedelta

import jwt
import pytest

from postsale.accounts.adapters.signing import SessionSigner, generate_private_key_pem
from postsale.accounts.domain.passwords import hash_password, verify_password
from postsale.runtime.passwords import password_problem
from postsale.runtime.auth import AUDIENCE, ISSUER

pytestmark = pytest.mark.unit


def test_passwords_are_hashed_with_argon2id_and_verified():
    hashed = hash_password("correct horse")
    assert hashed.startswith("$argon2id$")
    assert verify_password(hashed, "correct horse")
    assert not verify_password(hashed, "wrong horse")
    assert not verify_password(None, "correct horse")


@pytest.mark.parametrize(("password", "repeated", "problem"), [
    ("short", "short", "Choose a password of at least 8 characters."),
    ("long enough", "long enougH", "The two passwords are not the same."),
    ("long enough", "long enough", None),
])
def test_password_rules(password, repeated, problem):
    assert password_problem(password, repeated) == problem


def test_a_session_token_verifies_only_with_the_published_key():
    signer = SessionSigner(generate_private_key_pem())
    token = signer.sign(customer_id="cus_1", email="a@example.com", session_id="s1", lifetime=timedelta(hours=1))
    jwk = jwt.PyJWK(signer.jwks()["keys"][0])
    claims = jwt.decode(token, jwk.key, algorithms=["EdDSA"], audience=AUDIENCE, issuer=ISSUER)
    assert (claims["sub"], claims["email"], claims["sid"]) == ("cus_1", "a@example.com", "s1")
    assert jwt.get_unverified_header(token)["kid"] == signer.key_id

    other = jwt.PyJWK(SessionSigner(generate_private_key_pem()).jwks()["keys"][0])
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, other.key, algorithms=["EdDSA"], audience=AUDIENCE, issuer=ISSUER)
