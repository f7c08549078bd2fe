//! A software authenticator of the tests' own: a P-256 key per credential,
//! "none" attestation, user presence and verification always asserted. It
//! answers the server's options as `navigator.credentials.create` and
//! `.get` would, with the origin the test says, so the tests can also lie
//! (another origin, a tampered signature, a counter that goes backwards).

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use serde_cbor_2::Value as Cbor;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub struct SoftPasskey {
    key: SigningKey,
    pub credential_id: Vec<u8>,
    user_handle: Vec<u8>,
    rp_id: String,
    pub counter: u32,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s).expect("base64url")
}

fn client_data(kind: &str, challenge: &str, origin: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "type": kind,
        "challenge": challenge,
        "origin": origin,
        "crossOrigin": false,
    }))
    .expect("json")
}

/// UP (user present) and UV (user verified), plus AT when `attested`.
fn flags(attested: bool) -> u8 {
    0x01 | 0x04 | if attested { 0x40 } else { 0 }
}

impl SoftPasskey {
    /// `navigator.credentials.create({publicKey})` for the server's
    /// registration `options`, as the page at `origin`. Answers the new
    /// credential and the JSON the browser would post.
    pub fn create(options: &Value, origin: &str) -> (Self, Value) {
        let pk = &options["publicKey"];
        let rp_id = pk["rp"]["id"].as_str().expect("rp.id").to_owned();
        let challenge = pk["challenge"].as_str().expect("challenge");
        let user_handle = unb64(pk["user"]["id"].as_str().expect("user.id"));
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let credential_id: Vec<u8> = (0..16).map(|_| rand::random::<u8>()).collect();
        let point = key.verifying_key().to_encoded_point(false);
        let cose = Cbor::Map(BTreeMap::from([
            (Cbor::Integer(1), Cbor::Integer(2)),  // kty: EC2
            (Cbor::Integer(3), Cbor::Integer(-7)), // alg: ES256
            (Cbor::Integer(-1), Cbor::Integer(1)), // crv: P-256
            (
                Cbor::Integer(-2),
                Cbor::Bytes(point.x().expect("x").to_vec()),
            ),
            (
                Cbor::Integer(-3),
                Cbor::Bytes(point.y().expect("y").to_vec()),
            ),
        ]));
        let mut auth_data = Sha256::digest(rp_id.as_bytes()).to_vec();
        auth_data.push(flags(true));
        auth_data.extend_from_slice(&0u32.to_be_bytes());
        auth_data.extend_from_slice(&[0u8; 16]); // AAGUID
        auth_data.extend_from_slice(
            &u16::try_from(credential_id.len())
                .expect("short")
                .to_be_bytes(),
        );
        auth_data.extend_from_slice(&credential_id);
        auth_data.extend_from_slice(&serde_cbor_2::to_vec(&cose).expect("cbor"));
        let attestation = Cbor::Map(BTreeMap::from([
            (Cbor::Text("fmt".into()), Cbor::Text("none".into())),
            (Cbor::Text("attStmt".into()), Cbor::Map(BTreeMap::new())),
            (Cbor::Text("authData".into()), Cbor::Bytes(auth_data)),
        ]));
        let credential = json!({
            "id": b64(&credential_id),
            "rawId": b64(&credential_id),
            "type": "public-key",
            "response": {
                "attestationObject": b64(&serde_cbor_2::to_vec(&attestation).expect("cbor")),
                "clientDataJSON": b64(&client_data("webauthn.create", challenge, origin)),
            },
            "extensions": {},
        });
        (
            Self {
                key,
                credential_id,
                user_handle,
                rp_id,
                counter: 0,
            },
            credential,
        )
    }

    /// `navigator.credentials.get({publicKey})` for the server's sign-in
    /// `options`, as the page at `origin`; the counter moves on by one.
    pub fn get(&mut self, options: &Value, origin: &str) -> Value {
        self.counter += 1;
        self.assert_with_counter(options, origin, self.counter)
    }

    /// As `get`, with the counter given (a clone answers with an old one).
    pub fn assert_with_counter(&self, options: &Value, origin: &str, counter: u32) -> Value {
        let challenge = options["publicKey"]["challenge"]
            .as_str()
            .expect("challenge");
        let mut auth_data = Sha256::digest(self.rp_id.as_bytes()).to_vec();
        auth_data.push(flags(false));
        auth_data.extend_from_slice(&counter.to_be_bytes());
        let client = client_data("webauthn.get", challenge, origin);
        let mut signed = auth_data.clone();
        signed.extend_from_slice(&Sha256::digest(&client));
        let signature: Signature = self.key.sign(&signed);
        json!({
            "id": b64(&self.credential_id),
            "rawId": b64(&self.credential_id),
            "type": "public-key",
            "response": {
                "authenticatorData": b64(&auth_data),
                "clientDataJSON": b64(&client),
                "signature": b64(signature.to_der().as_bytes()),
                "userHandle": b64(&self.user_handle),
            },
            "extensions": {},
        })
    }
}
