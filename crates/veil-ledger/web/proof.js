// Veil ledger proof check, run in the patient's browser.
//
// Why in the browser: the portal is the hospital's own server, so a
// "verified" badge it renders itself proves nothing. This file checks a
// proof bundle (`veil ledger proof --json`, fields in docs/ledger.md) with
// the browser's own SHA-256 and Ed25519 (WebCrypto): the entry's RFC 6962
// audit path up to the root, and that root's C2SP checkpoint signature
// under the hospital's verifier key. It mirrors, step for step,
// crates/veil-ledger/src/merkle.rs (verify_inclusion), note.rs
// (NoteVerifier::parse, SignedNote::parse, parse_checkpoint_text) and
// proof.rs (ProofBundle::verify); the failure reasons are the same words.
//
// What it cannot prove: that the verifier key in the bundle is the
// hospital's. Whoever serves the page could serve a consistent bundle under
// a key of their own, so the page must show the key for comparison with
// the one the hospital publishes elsewhere.
//
// No dependencies, no inline script: the portal's Content-Security-Policy
// allows scripts from its own origin only, and this file is served as is
// (veil_ledger::PROOF_JS).

const VERIFIED = "verified against the hospital's signed log";
const FAILED = 'could NOT be verified: ';
const BUNDLE_FORMAT = 'veil-ledger-proof/1';

export const REASONS = Object.freeze({
  notIncluded: 'leaf not in tree: the entry is not at this position in the signed log',
  rootMismatch: 'root does not match checkpoint',
  badSignature: 'bad signature: the checkpoint was altered after it was signed',
  wrongKey: 'wrong key: the checkpoint is not signed by the given verifier key',
  noEd25519: 'this browser cannot check Ed25519 signatures (WebCrypto); see how to check it yourself',
});

// ---- bytes ---------------------------------------------------------------

const utf8 = new TextEncoder();

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

// Strict hex, as veil_ledger::unhex: even length, hex digits only.
function unhex(s) {
  if (typeof s !== 'string' || s.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(s)) return null;
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

// Standard, padded base64 only (what the notes and keys use).
function unbase64(s) {
  if (typeof s !== 'string' || s.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(s)) {
    return null;
  }
  try {
    return Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
  } catch {
    return null;
  }
}

function equal(a, b) {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
}

function subtle() {
  return globalThis.crypto && globalThis.crypto.subtle ? globalThis.crypto.subtle : null;
}

async function sha256(...parts) {
  const s = subtle();
  // crypto.subtle exists only in secure contexts (HTTPS, or localhost)
  if (!s) throw new Error('no WebCrypto (the page must be served over HTTPS)');
  return new Uint8Array(await s.digest('SHA-256', concat(...parts)));
}

// RFC 6962 2.1: leaves and nodes are hashed apart, so a leaf can never
// pass for an interior node.
const leafHash = (data) => sha256(Uint8Array.of(0), data);
const nodeHash = (left, right) => sha256(Uint8Array.of(1), left, right);

// ---- Merkle inclusion ------------------------------------------------------

/**
 * RFC 9162 2.1.3.2: is `leafBytes` (the leaf data, hashed here with the
 * 0x00 prefix) at `index` in the tree of `size` leaves whose root is
 * `rootHex`, by the audit path `proofHexArray`? Exactly merkle.rs
 * verify_inclusion. Indexes are BigInt inside: JavaScript's bit operators
 * work on 32 bits, and a log may outgrow that.
 */
export async function verifyInclusion(leafBytes, index, size, proofHexArray, rootHex) {
  let fn;
  let sn;
  try {
    fn = BigInt(index);
    sn = BigInt(size);
  } catch {
    return false;
  }
  const root = unhex(rootHex);
  if (!root || root.length !== 32 || !Array.isArray(proofHexArray)) return false;
  const proof = proofHexArray.map(unhex);
  if (proof.some((p) => !p || p.length !== 32)) return false;
  if (fn < 0n || fn >= sn) return false;
  sn -= 1n;
  let r = await leafHash(leafBytes);
  for (const p of proof) {
    if (sn === 0n) return false;
    if ((fn & 1n) === 1n || fn === sn) {
      r = await nodeHash(p, r);
      if ((fn & 1n) === 0n) {
        while ((fn & 1n) === 0n && fn !== 0n) {
          fn >>= 1n;
          sn >>= 1n;
        }
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  return sn === 0n && equal(r, root);
}

// ---- signed notes ----------------------------------------------------------

// A key name: non-empty, no space, no '+' (note.rs valid_name).
const validName = (n) => n.length > 0 && !/[\s+]/u.test(n);

// `NAME+KEYID+BASE64(0x01 || key)`; the key id is recomputed, so a key
// string whose parts disagree is refused (note.rs NoteVerifier::parse).
async function parseVerifierKey(text) {
  if (typeof text !== 'string') return null;
  const t = text.trim();
  const a = t.indexOf('+');
  const b = a < 0 ? -1 : t.indexOf('+', a + 1);
  if (b < 0) return null;
  const name = t.slice(0, a);
  const id = t.slice(a + 1, b);
  const raw = unbase64(t.slice(b + 1));
  if (!validName(name) || !/^[0-9a-fA-F]{8}$/.test(id)) return null;
  if (!raw || raw.length !== 33 || raw[0] !== 0x01) return null;
  const h = await sha256(utf8.encode(name), utf8.encode('\n'), raw);
  if (hex(h.slice(0, 4)) !== id.toLowerCase()) return null;
  return { name, id: id.toLowerCase(), key: raw.slice(1) };
}

// Text, blank line, `— NAME BASE64(keyid || signature)` lines (note.rs
// SignedNote::parse): the text ends at the last blank line.
function parseNote(note) {
  if (typeof note !== 'string' || /[\u0000-\u0009\u000b-\u001f]/.test(note)) return null;
  const split = note.lastIndexOf('\n\n');
  if (split < 0) return null;
  const text = note.slice(0, split + 1);
  const rest = note.slice(split + 2);
  if (!rest.endsWith('\n')) return null;
  const sigs = [];
  for (const line of rest.slice(0, -1).split('\n')) {
    if (!line.startsWith('\u2014 ')) return null;
    const body = line.slice(2);
    const sp = body.indexOf(' ');
    if (sp < 0) return null;
    const name = body.slice(0, sp);
    const raw = unbase64(body.slice(sp + 1));
    if (!validName(name) || !raw || raw.length < 5) return null;
    sigs.push({ name, id: hex(raw.slice(0, 4)), sig: raw.slice(4) });
  }
  return { text, sigs };
}

// origin, size (decimal, no leading zero), base64 root; extension lines
// ignored (note.rs parse_checkpoint_text).
function parseCheckpointText(text) {
  if (!text.endsWith('\n')) return null;
  const lines = text.slice(0, -1).split('\n');
  if (lines.length < 3 || lines.some((l) => l === '')) return null;
  if (!/^(0|[1-9][0-9]*)$/.test(lines[1])) return null;
  const root = unbase64(lines[2]);
  if (!root || root.length !== 32) return null;
  return { origin: lines[0], size: BigInt(lines[1]), rootHex: hex(root) };
}

async function ed25519Verify(pub, sig, data) {
  const s = subtle();
  if (!s) return null;
  let key;
  try {
    key = await s.importKey('raw', pub, { name: 'Ed25519' }, false, ['verify']);
  } catch (e) {
    // NotSupportedError: no Ed25519 in this browser's WebCrypto (Chrome
    // before 137, Firefox before 129, Safari before 17). A bad key was
    // already refused by parseVerifierKey's shape checks; an invalid
    // point also lands here and is reported as unverifiable, not as
    // verified.
    if (e && e.name === 'NotSupportedError') return null;
    return false;
  }
  return s.verify({ name: 'Ed25519' }, key, sig, data);
}

/**
 * Checks a C2SP checkpoint note against `verifierKey` (NAME+KEYID+BASE64).
 * As the signed-note spec says: signature lines of other keys are ignored
 * (witness cosignatures ride along), one of this key that fails rejects
 * the note, and at least one must verify. Returns {ok: true, origin, size
 * (BigInt), rootHex} or {ok: false, reason}.
 */
export async function verifyCheckpoint(noteText, verifierKey) {
  const v = await parseVerifierKey(verifierKey);
  if (!v) return { ok: false, reason: 'malformed bundle: not a verifier key (NAME+KEYID+BASE64)' };
  const note = parseNote(noteText);
  if (!note) return { ok: false, reason: 'malformed bundle: not a signed note' };
  let verified = false;
  for (const s of note.sigs) {
    if (s.name !== v.name || s.id !== v.id) continue;
    if (s.sig.length !== 64) return { ok: false, reason: REASONS.badSignature };
    const ok = await ed25519Verify(v.key, s.sig, utf8.encode(note.text));
    if (ok === null) return { ok: false, reason: REASONS.noEd25519 };
    if (!ok) return { ok: false, reason: REASONS.badSignature };
    verified = true;
  }
  if (!verified) return { ok: false, reason: REASONS.wrongKey };
  const head = parseCheckpointText(note.text);
  if (!head) return { ok: false, reason: 'malformed bundle: the note is not a checkpoint' };
  // a note by this key about another log is not this log's head
  if (head.origin !== v.name) return { ok: false, reason: REASONS.wrongKey };
  return { ok: true, ...head };
}

/**
 * Checks a whole bundle (the JSON text or the parsed object) as
 * proof.rs ProofBundle::verify does: the checkpoint's signature, that the
 * bundle's size and root are the signed ones, then the audit path from
 * the leaf to the signed root. Returns {ok: true, reason: null} or
 * {ok: false, reason}.
 */
export async function verifyProofBundle(bundleJson) {
  let b = bundleJson;
  try {
    if (typeof b === 'string') b = JSON.parse(b);
  } catch {
    return { ok: false, reason: 'malformed bundle: not JSON' };
  }
  if (
    !b || b.format !== BUNDLE_FORMAT || typeof b.leaf !== 'string' ||
    !Number.isSafeInteger(b.index) || !Number.isSafeInteger(b.tree_size) ||
    typeof b.root !== 'string' || !Array.isArray(b.proof) ||
    typeof b.checkpoint !== 'string' || typeof b.verifier_key !== 'string'
  ) {
    return { ok: false, reason: `malformed bundle: not a ${BUNDLE_FORMAT} bundle` };
  }
  try {
    const head = await verifyCheckpoint(b.checkpoint, b.verifier_key);
    if (!head.ok) return { ok: false, reason: head.reason };
    if (head.size !== BigInt(b.tree_size) || b.root.toLowerCase() !== head.rootHex) {
      return { ok: false, reason: REASONS.rootMismatch };
    }
    const inTree = await verifyInclusion(
      utf8.encode(b.leaf), b.index, head.size, b.proof, head.rootHex,
    );
    return inTree ? { ok: true, reason: null } : { ok: false, reason: REASONS.notIncluded };
  } catch (e) {
    return { ok: false, reason: `the check could not run: ${e && e.message ? e.message : e}` };
  }
}

// ---- the page --------------------------------------------------------------

// The bundle of an element: a child <script type="application/json"> (a
// data block: never executed, so allowed under `script-src 'self'`; the
// server must escape '<' in it as \u003c), or else the element's
// data-veil-proof attribute.
function bundleOf(el) {
  const data = el.querySelector('script[type="application/json"]');
  return data ? data.textContent : el.getAttribute('data-veil-proof');
}

// The element the result is written into: the page's own
// [data-veil-proof-result] (put it in the HTML, with role="status", so
// screen readers already know the live region when the text changes), or
// one added here.
function resultOf(el) {
  let out = el.querySelector('[data-veil-proof-result]');
  if (!out) {
    out = el.ownerDocument.createElement('p');
    out.setAttribute('data-veil-proof-result', '');
    el.appendChild(out);
  }
  if (!out.hasAttribute('role')) out.setAttribute('role', 'status');
  if (!out.hasAttribute('aria-live')) out.setAttribute('aria-live', 'polite');
  return out;
}

/**
 * Checks every [data-veil-proof] element under `root` not yet checked and
 * writes the verdict into it; sets data-veil-proof-state to "checking",
 * then "verified" or "failed" (for styles and tests). Returns the results.
 */
export async function autoRun(root = document) {
  const els = Array.from(root.querySelectorAll('[data-veil-proof]'))
    .filter((el) => !el.hasAttribute('data-veil-proof-state'));
  return Promise.all(els.map(async (el) => {
    const out = resultOf(el);
    el.setAttribute('data-veil-proof-state', 'checking');
    // busy: screen readers wait for the verdict instead of announcing
    // this interim text
    el.setAttribute('aria-busy', 'true');
    out.textContent = 'Checking the proof\u2026';
    const r = await verifyProofBundle(bundleOf(el));
    out.textContent = r.ok ? VERIFIED : FAILED + r.reason;
    el.setAttribute('data-veil-proof-state', r.ok ? 'verified' : 'failed');
    el.removeAttribute('aria-busy');
    return r;
  }));
}

// A module script runs after the document is parsed, so the elements are
// there; imported elsewhere (tests, Node) without a document, it does
// nothing until autoRun is called.
if (typeof document !== 'undefined' && document.querySelector) {
  autoRun(document);
}
