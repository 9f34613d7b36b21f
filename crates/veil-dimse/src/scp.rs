//! The acceptor: C-ECHO and C-STORE SCP, one thread per association.
//!
//! Why blocking threads: dicom-ul's synchronous API is the mature one, an
//! association is a long sequential conversation, and the association
//! limit bounds the threads; an async runtime would buy nothing here.
//!
//! What the SCP decides on its own, before any caller code runs: who may
//! associate (calling-AE allow-list, called AE of a configured route),
//! which contexts are accepted (every storage SOP class, the transfer
//! syntaxes Veil reads), how many associations at once, and how long a
//! silent peer is kept. A peer that breaks the protocol is aborted; the
//! accept loop never stops for it.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use dicom_dictionary_std::uids;
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_ul::association::server::{AccessControl, DefaultNegotiation};
use dicom_ul::association::{Association, CloseSocket, SyncAssociation};
use dicom_ul::pdu::{
    AbortRQServiceProviderReason, AbortRQSource, AssociationRJ, AssociationRJResult,
    AssociationRJServiceProviderPresentationReason, AssociationRJServiceUserReason,
    AssociationRJSource, PresentationContextResultReason, UserIdentity,
};
use dicom_ul::{Pdu, ServerAssociation, ServerAssociationOptions};
use tracing::{debug, info, warn};

use crate::command::{status, CommandField, CommandSet};
use crate::error::DimseError;
use crate::link::{Ended, Link};
use crate::storage_classes::STORAGE_SOP_CLASSES;
use crate::validate::{check_head, Encoding, HeadError};

/// What the SCP accepts and how long it waits.
#[derive(Debug, Clone)]
pub struct ScpConfig {
    /// Calling AE titles allowed to associate. Empty refuses everyone;
    /// `"*"` must be listed explicitly to allow any.
    pub allowed_calling_aes: Vec<String>,
    /// Called AE titles this SCP answers to (one per route); any other is
    /// rejected at association time.
    pub called_aes: Vec<String>,
    /// The largest P-DATA PDU this SCP receives (announced to peers; a
    /// larger one aborts the association).
    pub max_pdu_length: u32,
    /// Associations served at once; more are rejected (transient, local
    /// limit exceeded) so the sender retries later.
    pub max_associations: usize,
    /// ARTIM: how long a new connection may take to send its
    /// A-ASSOCIATE-RQ.
    pub artim_timeout: Duration,
    /// How long an established association may stay silent.
    pub idle_timeout: Duration,
    /// DICOM TLS (PS3.15 B.1): when set, every connection must speak TLS
    /// ([`crate::tls::server_config`] builds one from PEM files, with
    /// client certificates required when a CA is given).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for ScpConfig {
    fn default() -> Self {
        ScpConfig {
            allowed_calling_aes: Vec::new(),
            called_aes: Vec::new(),
            max_pdu_length: 65536,
            max_associations: 16,
            artim_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            tls: None,
        }
    }
}

/// One C-STORE as the handler sees it. The UIDs are identifiers of the
/// instance: a handler must not log them.
#[derive(Debug, Clone)]
pub struct StoreRequest {
    /// The sender's AE title.
    pub calling_ae: String,
    /// The AE title the sender called (selects the route).
    pub called_ae: String,
    /// Peer address.
    pub peer: SocketAddr,
    /// AffectedSOPClassUID of the command.
    pub sop_class_uid: String,
    /// AffectedSOPInstanceUID of the command.
    pub sop_instance_uid: String,
    /// The negotiated transfer syntax of the data set.
    pub transfer_syntax_uid: String,
}

/// A handler's refusal: the DIMSE status sent back and a reason for the
/// log (kinds, never values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreRefusal {
    /// DIMSE status, e.g. [`status::OUT_OF_RESOURCES`].
    pub status: u16,
    /// Why, for the log.
    pub reason: String,
}

impl StoreRefusal {
    /// Refused: out of resources (A700): the sender may retry later.
    pub fn out_of_resources(reason: impl Into<String>) -> Self {
        StoreRefusal {
            status: status::OUT_OF_RESOURCES,
            reason: reason.into(),
        }
    }

    /// Processing failure (0110).
    pub fn processing_failure(reason: impl Into<String>) -> Self {
        StoreRefusal {
            status: status::PROCESSING_FAILURE,
            reason: reason.into(),
        }
    }
}

/// Receives each instance. `data` streams the data set (as received, in
/// `req.transfer_syntax_uid`) straight from the association; the handler
/// copies it where it wants (a spool file, fsynced) and returns. Success
/// is sent to the peer only after `Ok`, and only if the handler read the
/// data set to its end. An `Err` from `data` means the peer broke off:
/// discard what was written.
pub trait StoreHandler: Send + Sync + 'static {
    /// Stores one instance.
    fn store(&self, req: &StoreRequest, data: &mut dyn Read) -> Result<(), StoreRefusal>;
}

impl<F> StoreHandler for F
where
    F: Fn(&StoreRequest, &mut dyn Read) -> Result<(), StoreRefusal> + Send + Sync + 'static,
{
    fn store(&self, req: &StoreRequest, data: &mut dyn Read) -> Result<(), StoreRefusal> {
        self(req, data)
    }
}

/// Writes the Part 10 preamble, magic and file meta group for a received
/// instance, so that a handler can spool a file any DICOM tool opens: the
/// data set bytes that follow are then exactly what the peer sent.
pub fn write_part10_header(w: &mut dyn io::Write, req: &StoreRequest) -> io::Result<()> {
    let meta = dicom_object::meta::FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(req.sop_class_uid.as_str())
        .media_storage_sop_instance_uid(req.sop_instance_uid.as_str())
        .transfer_syntax(req.transfer_syntax_uid.as_str())
        .build()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "cannot build file meta"))?;
    w.write_all(&[0u8; 128])?;
    w.write_all(b"DICM")?;
    meta.write(w)
        .map_err(|_| io::Error::other("cannot write file meta"))
}

/// The transfer syntaxes the SCP accepts: those the registry can read a
/// data set of (native, deflated, and every encapsulated syntax, whose
/// pixel data Veil keeps as fragments). Sorted for a stable preference.
pub fn accepted_transfer_syntaxes() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = TransferSyntaxRegistry
        .iter()
        .filter(|ts| !ts.is_unsupported())
        .map(|ts| ts.uid())
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Abstract syntaxes accepted: Verification and every storage SOP class.
pub fn accepted_abstract_syntaxes() -> Vec<&'static str> {
    let mut v = vec![uids::VERIFICATION];
    v.extend_from_slice(STORAGE_SOP_CLASSES);
    v
}

#[derive(Debug, Clone)]
struct AeAccess {
    any_calling: bool,
    calling: Vec<String>,
    called: Vec<String>,
}

impl AccessControl for AeAccess {
    fn check_access(
        &self,
        _this_ae_title: &str,
        calling_ae_title: &str,
        called_ae_title: &str,
        _user_identity: Option<&UserIdentity>,
    ) -> Result<(), AssociationRJServiceUserReason> {
        let calling = calling_ae_title.trim();
        let called = called_ae_title.trim();
        if !self.called.iter().any(|c| c == called) {
            warn!(
                calling_ae = calling,
                called_ae = called,
                "association rejected: called AE not served"
            );
            return Err(AssociationRJServiceUserReason::CalledAETitleNotRecognized);
        }
        if !(self.any_calling || self.calling.iter().any(|c| c == calling)) {
            warn!(
                calling_ae = calling,
                called_ae = called,
                "association rejected: calling AE not allowed"
            );
            return Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized);
        }
        Ok(())
    }
}

/// The smallest maximum PDU length the SCP accepts as configuration.
/// dicom-ul reads the A-ASSOCIATE-RQ under the same limit as P-DATA, and
/// a sender proposing a context per storage class (dcmtk's storescu: over
/// 120) needs about 13 KB for it; below this such senders would be
/// aborted before negotiation.
pub const MIN_MAX_PDU: u32 = 16384;

type Options = ServerAssociationOptions<'static, AeAccess, DefaultNegotiation>;

struct Shared {
    options: Options,
    config: ScpConfig,
    handler: Arc<dyn StoreHandler>,
    active: AtomicUsize,
    /// connections being turned away over the limit (each for at most
    /// the ARTIM timeout); capped so a flood cannot spawn threads unbounded
    rejecting: AtomicUsize,
    stop: AtomicBool,
}

/// A running SCP. Dropping it stops it as [`Scp::shutdown`] does.
pub struct Scp {
    shared: Arc<Shared>,
    addr: SocketAddr,
    accept: Option<JoinHandle<()>>,
}

/// Counts an association while it lives, whatever way its thread ends.
struct ActiveGuard(Arc<Shared>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Scp {
    /// Starts serving on `listener` (bound by the caller, so port 0 and
    /// privileged setups work). Fails on an unusable configuration.
    pub fn start(
        listener: TcpListener,
        config: ScpConfig,
        handler: Arc<dyn StoreHandler>,
    ) -> Result<Scp, DimseError> {
        let trim = |v: &[String]| -> Vec<String> {
            v.iter().map(|s| s.trim().to_string()).collect::<Vec<_>>()
        };
        for ae in config.called_aes.iter().chain(&config.allowed_calling_aes) {
            let t = ae.trim();
            if t.is_empty() || t.len() > 16 || !t.is_ascii() || t.contains('\\') {
                return Err(DimseError::Config(format!(
                    "AE title {ae:?} is not 1 to 16 ASCII characters"
                )));
            }
        }
        if config.called_aes.is_empty() {
            return Err(DimseError::Config("no called AE title to serve".into()));
        }
        if config.max_pdu_length < MIN_MAX_PDU {
            return Err(DimseError::Config(format!(
                "max_pdu_length {} is below {MIN_MAX_PDU}",
                config.max_pdu_length
            )));
        }
        if config.max_associations == 0 {
            return Err(DimseError::Config("max_associations is 0".into()));
        }
        let access = AeAccess {
            any_calling: config.allowed_calling_aes.iter().any(|a| a.trim() == "*"),
            calling: trim(&config.allowed_calling_aes),
            called: trim(&config.called_aes),
        };
        let mut options: Options = ServerAssociationOptions::new()
            .ae_access_control(access)
            .ae_title(config.called_aes[0].trim().to_string())
            .max_pdu_length(config.max_pdu_length)
            .strict(true)
            .read_timeout(config.artim_timeout)
            .write_timeout(config.idle_timeout);
        for a in accepted_abstract_syntaxes() {
            options = options.with_abstract_syntax(a);
        }
        for t in accepted_transfer_syntaxes() {
            options = options.with_transfer_syntax(t);
        }
        if let Some(tls) = &config.tls {
            options = options.tls_config(tls.clone());
        }
        let addr = listener
            .local_addr()
            .map_err(|e| DimseError::io("listener address", &e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| DimseError::io("listener non-blocking", &e))?;
        let shared = Arc::new(Shared {
            options,
            config,
            handler,
            active: AtomicUsize::new(0),
            rejecting: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let accept = std::thread::Builder::new()
            .name("veil-dimse-accept".into())
            .spawn(move || accept_loop(listener, s))
            .map_err(|e| DimseError::io("spawn accept thread", &e))?;
        info!(%addr, "DICOM SCP listening");
        Ok(Scp {
            shared,
            addr,
            accept: Some(accept),
        })
    }

    /// The address served.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Associations being served now.
    pub fn active_associations(&self) -> usize {
        self.shared.active.load(Ordering::SeqCst)
    }

    /// Stops accepting, lets in-flight associations finish (each ends by
    /// release, abort or idle timeout), then returns.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.accept.take() {
            if h.join().is_err() {
                warn!("DICOM SCP accept thread panicked");
            }
            info!("DICOM SCP stopped");
        }
    }
}

impl Drop for Scp {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, peer)) => {
                workers.retain(|h| !h.is_finished());
                if let Err(e) = stream.set_nonblocking(false) {
                    warn!(error = %e, "cannot configure accepted socket");
                    continue;
                }
                let _ = stream.set_nodelay(true);
                let over =
                    shared.active.fetch_add(1, Ordering::SeqCst) >= shared.config.max_associations;
                let guard = ActiveGuard(shared.clone());
                let s = shared.clone();
                let spawned = std::thread::Builder::new()
                    .name("veil-dimse-assoc".into())
                    .spawn(move || {
                        if over {
                            drop(guard);
                            s.rejecting.fetch_add(1, Ordering::SeqCst);
                            reject_busy(stream, peer, &s.config);
                            s.rejecting.fetch_sub(1, Ordering::SeqCst);
                        } else {
                            serve_connection(stream, peer, &s);
                            drop(guard);
                        }
                    });
                match spawned {
                    Ok(h) => workers.push(h),
                    Err(e) => warn!(error = %e, "cannot spawn association thread"),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                warn!(error = %e, "accept failed");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    // new connections are refused from here on, while in-flight
    // associations finish
    drop(listener);
    for h in workers {
        let _ = h.join();
    }
}

/// Answers an association over the limit with A-ASSOCIATE-RJ (transient,
/// service provider, local limit exceeded): the standard way to say "try
/// again later".
fn reject_busy(mut stream: TcpStream, peer: SocketAddr, config: &ScpConfig) {
    let _ = stream.set_read_timeout(Some(config.artim_timeout));
    let _ = stream.set_write_timeout(Some(config.artim_timeout));
    let mut buf = bytes_buf();
    let rq = dicom_ul::association::read_pdu_from_wire(
        &mut stream,
        &mut buf,
        config.max_pdu_length.max(dicom_ul::pdu::MINIMUM_PDU_SIZE),
        true,
    );
    let pdu = match rq {
        Ok(Pdu::AssociationRQ(_)) => Pdu::AssociationRJ(AssociationRJ {
            result: AssociationRJResult::Transient,
            source: AssociationRJSource::ServiceProviderPresentation(
                AssociationRJServiceProviderPresentationReason::LocalLimitExceeded,
            ),
        }),
        _ => abort_pdu(),
    };
    warn!(%peer, "association rejected: association limit reached");
    write_and_close(stream, &pdu);
}

fn bytes_buf() -> bytes::BytesMut {
    bytes::BytesMut::with_capacity(16 * 1024)
}

fn abort_pdu() -> Pdu {
    Pdu::AbortRQ {
        source: AbortRQSource::ServiceProvider(AbortRQServiceProviderReason::ReasonNotSpecified),
    }
}

fn write_and_close(mut stream: TcpStream, pdu: &Pdu) {
    let mut out = Vec::new();
    if dicom_ul::write_pdu(&mut out, pdu).is_ok() {
        let _ = io::Write::write_all(&mut stream, &out);
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

fn serve_connection(stream: TcpStream, peer: SocketAddr, shared: &Shared) {
    // a second handle on the socket: to answer with A-ABORT when
    // negotiation fails on a malformed PDU (dicom-ul only answers the
    // requests it understood), and to set the idle timeout afterwards
    let spare = stream.try_clone().ok();
    let tls = shared.config.tls.is_some();
    if let Err(why) = preflight(&stream, tls, &shared.config) {
        warn!(%peer, why, "connection refused before negotiation");
        if tls {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        } else {
            write_and_close(stream, &abort_pdu());
        }
        return;
    }
    if tls {
        match shared.options.establish_tls(stream) {
            Ok(assoc) => serve(assoc, spare, peer, shared),
            Err(e) => negotiation_failed(e, spare, peer),
        }
    } else {
        match shared.options.establish(stream) {
            Ok(assoc) => serve(assoc, spare, peer, shared),
            Err(e) => negotiation_failed(e, spare, peer),
        }
    }
}

/// Largest first TLS record accepted (a ClientHello is a few KB).
const MAX_TLS_RECORD: usize = 16384 + 2048;

/// Waits, up to the ARTIM timeout, until the first PDU (or, with TLS, the
/// first record, holding the whole ClientHello) is complete in the
/// socket's receive queue, without consuming it, and checks its header.
///
/// Why: with its `sync-tls` feature, dicom-ul 0.10.1 probes a failed
/// read for TLS by looping on `rustls::server::Acceptor` over the bytes
/// received so far, and that loop never ends when they are empty or a
/// truncated TLS record (`accept_tls` in `association/server.rs`): a
/// silent or truncated peer would pin a thread at full CPU forever. Only a
/// complete A-ASSOCIATE-RQ (or ClientHello) is handed to dicom-ul, so its
/// reads cannot fail that way; everything else is refused here, with an
/// A-ABORT in the clear.
fn preflight(stream: &TcpStream, tls: bool, config: &ScpConfig) -> Result<(), &'static str> {
    let deadline = std::time::Instant::now() + config.artim_timeout;
    stream
        .set_read_timeout(Some(config.artim_timeout))
        .map_err(|_| "cannot set ARTIM timeout")?;
    let mut buf = vec![0u8; 16];
    // wait until `want` bytes can be peeked
    let wait_for = |buf: &mut Vec<u8>, want: usize| -> Result<(), &'static str> {
        buf.resize(want, 0);
        loop {
            match stream.peek(&mut buf[..want]) {
                Ok(0) => return Err("peer closed before a complete request"),
                Ok(n) if n >= want => return Ok(()),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err("ARTIM expired before a complete request")
                }
                Err(_) => return Err("connection failed"),
            }
            if std::time::Instant::now() >= deadline {
                return Err("ARTIM expired before a complete request");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    if tls {
        wait_for(&mut buf, 5)?;
        if buf[0] != 0x16 {
            return Err("not a TLS handshake");
        }
        let len = u16::from_be_bytes([buf[3], buf[4]]) as usize;
        if !(4..=MAX_TLS_RECORD).contains(&len) {
            return Err("TLS record length out of range");
        }
        wait_for(&mut buf, 5 + len)?;
        let hello = u32::from_be_bytes([0, buf[6], buf[7], buf[8]]) as usize;
        if buf[5] != 0x01 || hello + 4 > len {
            return Err("ClientHello not in one record");
        }
        return Ok(());
    }
    wait_for(&mut buf, 6)?;
    if buf[0] != 0x01 {
        return Err("first PDU is not an A-ASSOCIATE-RQ");
    }
    let len = u32::from_be_bytes([buf[2], buf[3], buf[4], buf[5]]);
    if len > config.max_pdu_length || len < 68 {
        return Err("A-ASSOCIATE-RQ length out of range");
    }
    wait_for(&mut buf, 6 + len as usize)
}

fn negotiation_failed(e: dicom_ul::association::Error, spare: Option<TcpStream>, peer: SocketAddr) {
    let e = crate::error::ul_error("association negotiation", e);
    match &e {
        DimseError::Rejected { .. } => debug!(%peer, "association rejected"),
        _ => {
            warn!(%peer, error = %e, "association negotiation failed: aborting");
            // over TLS the abort would be plaintext inside a TLS session:
            // only closing is clean there, and write_and_close closes
            if let Some(s) = spare {
                write_and_close(s, &abort_pdu());
            }
        }
    }
}

fn serve<S>(
    assoc: ServerAssociation<S>,
    spare: Option<TcpStream>,
    peer: SocketAddr,
    shared: &Shared,
) where
    S: Read + io::Write + CloseSocket,
{
    let calling = assoc.peer_ae_title().trim().to_string();
    let called = assoc.called_ae_title().trim().to_string();
    info!(%peer, calling_ae = %calling, called_ae = %called, tls = shared.config.tls.is_some(), "association accepted");
    if let Some(s) = &spare {
        if let Err(e) = s.set_read_timeout(Some(shared.config.idle_timeout)) {
            warn!(error = %e, "cannot set idle timeout");
        }
    }
    let mut link = Link::new(assoc);
    let mut stored = 0u64;
    let outcome = loop {
        match link.recv_command() {
            Ok(Ok((pc, cmd))) => {
                match dispatch(&mut link, pc, &cmd, &calling, &called, peer, shared) {
                    Ok(n) => stored += n,
                    Err(e) => break Err(e),
                }
            }
            Ok(Err(Ended::Released)) => break Ok("released"),
            Ok(Err(Ended::Aborted)) => break Ok("aborted by peer"),
            Err(e) => break Err(e),
        }
    };
    match outcome {
        Ok(how) => info!(%peer, calling_ae = %calling, stored, how, "association ended"),
        Err(e) => {
            warn!(%peer, calling_ae = %calling, stored, error = %e, "association aborted");
            let _ = SyncAssociation::abort(link.into_inner());
        }
    }
}

type ServerLink<S> = Link<ServerAssociation<S>, S>;

/// Handles one command; returns the number of instances stored.
fn dispatch<S: Read + io::Write + CloseSocket>(
    link: &mut ServerLink<S>,
    pc: u8,
    cmd: &CommandSet,
    calling: &str,
    called: &str,
    peer: SocketAddr,
    shared: &Shared,
) -> Result<u64, DimseError> {
    let ctx = link
        .assoc()
        .presentation_contexts()
        .iter()
        .find(|c| c.id == pc && c.reason == PresentationContextResultReason::Acceptance)
        .cloned()
        .ok_or(DimseError::Protocol(
            "message on a context that was not accepted",
        ))?;
    let msg_id = cmd.message_id().unwrap_or(0);
    match cmd.command_field() {
        Some(CommandField::CEchoRq) => {
            if cmd.has_data_set() {
                link.data_reader(pc)
                    .drain()
                    .map_err(|e| DimseError::io("drain", &e))?;
            }
            let mut rsp =
                CommandSet::response(CommandField::CEchoRsp, msg_id, status::SUCCESS, false);
            rsp.set_uid(
                dicom_dictionary_std::tags::AFFECTED_SOP_CLASS_UID.element(),
                uids::VERIFICATION,
            );
            link.send_command(pc, &rsp)?;
            debug!(%peer, "C-ECHO answered");
            Ok(0)
        }
        Some(CommandField::CStoreRq) => {
            let req = StoreRequest {
                calling_ae: calling.to_string(),
                called_ae: called.to_string(),
                peer,
                sop_class_uid: cmd.affected_sop_class().unwrap_or("").to_string(),
                sop_instance_uid: cmd.affected_sop_instance().unwrap_or("").to_string(),
                transfer_syntax_uid: ctx.transfer_syntax.trim_end_matches('\0').to_string(),
            };
            let st = store(link, pc, &ctx.abstract_syntax, cmd, &req, shared)?;
            let mut rsp = CommandSet::response(CommandField::CStoreRsp, msg_id, st, false);
            rsp.set_uid(
                dicom_dictionary_std::tags::AFFECTED_SOP_CLASS_UID.element(),
                &req.sop_class_uid,
            );
            rsp.set_uid(
                dicom_dictionary_std::tags::AFFECTED_SOP_INSTANCE_UID.element(),
                &req.sop_instance_uid,
            );
            link.send_command(pc, &rsp)?;
            Ok(u64::from(st == status::SUCCESS))
        }
        Some(CommandField::CCancelRq) => Ok(0),
        _ => {
            if !cmd.has_data_set() || link.data_reader(pc).drain().is_ok() {
                let field = cmd.command_field_raw().unwrap_or(0) | 0x8000;
                let mut rsp = CommandSet::new();
                rsp.set_u16(dicom_dictionary_std::tags::COMMAND_FIELD.element(), field)
                    .set_u16(
                        dicom_dictionary_std::tags::MESSAGE_ID_BEING_RESPONDED_TO.element(),
                        msg_id,
                    )
                    .set_u16(
                        dicom_dictionary_std::tags::COMMAND_DATA_SET_TYPE.element(),
                        crate::command::NO_DATA_SET,
                    )
                    .set_u16(
                        dicom_dictionary_std::tags::STATUS.element(),
                        status::UNRECOGNIZED_OPERATION,
                    );
                link.send_command(pc, &rsp)?;
                debug!(%peer, "unsupported DIMSE command answered");
                Ok(0)
            } else {
                Err(DimseError::Protocol(
                    "broken data set after an unsupported command",
                ))
            }
        }
    }
}

/// The head of a data set inspected before the handler runs.
const HEAD: usize = 64 * 1024;

/// Receives one C-STORE data set into the handler; returns the status.
/// An `Err` means the association itself broke.
fn store<S: Read + io::Write + CloseSocket>(
    link: &mut ServerLink<S>,
    pc: u8,
    abstract_syntax: &str,
    cmd: &CommandSet,
    req: &StoreRequest,
    shared: &Shared,
) -> Result<u16, DimseError> {
    let mut reader = link.data_reader(pc);
    let drain_with = |reader: &mut crate::link::DataReader<'_, _, _>, st: u16, why: &str| {
        reader
            .drain()
            .map_err(|e| DimseError::io("drain refused data set", &e))?;
        warn!(peer = %req.peer, calling_ae = %req.calling_ae, status = format!("{st:04X}"), why, "C-STORE refused");
        Ok(st)
    };
    if !cmd.has_data_set() {
        warn!(peer = %req.peer, "C-STORE without a data set");
        return Ok(status::CANNOT_UNDERSTAND);
    }
    if req.sop_class_uid != abstract_syntax.trim_end_matches('\0') {
        return drain_with(
            &mut reader,
            status::SOP_CLASS_NOT_SUPPORTED,
            "SOP class differs from the presentation context",
        );
    }
    if req.sop_instance_uid.is_empty() {
        return drain_with(
            &mut reader,
            status::CANNOT_UNDERSTAND,
            "no AffectedSOPInstanceUID",
        );
    }
    let mut head = Vec::with_capacity(HEAD.min(16 * 1024));
    (&mut reader)
        .take(HEAD as u64)
        .read_to_end(&mut head)
        .map_err(|e| DimseError::io("receive data set", &e))?;
    let complete = reader.is_done();
    let ts = req.transfer_syntax_uid.as_str();
    let deflated = TransferSyntaxRegistry.get(ts).is_some_and(|t| {
        matches!(
            t.codec(),
            dicom_encoding::transfer_syntax::Codec::Dataset(_)
        )
    });
    if !deflated {
        let enc = Encoding {
            explicit: !(ts == uids::IMPLICIT_VR_LITTLE_ENDIAN || ts == "1.2.840.113619.5.2"),
            big_endian: TransferSyntaxRegistry.get(ts).is_some_and(|t| {
                t.endianness() == dicom_encoding::transfer_syntax::Endianness::Big
            }),
        };
        if let Err(e) = check_head(
            &head,
            complete,
            enc,
            &req.sop_class_uid,
            &req.sop_instance_uid,
        ) {
            let (st, why) = match e {
                HeadError::Malformed => (status::CANNOT_UNDERSTAND, "data set is not well formed"),
                HeadError::MissingIdentity => (
                    status::CANNOT_UNDERSTAND,
                    "data set has no SOP Class/Instance UID",
                ),
                HeadError::Mismatch => (
                    status::DATA_SET_MISMATCH,
                    "data set UIDs differ from the command",
                ),
            };
            return drain_with(&mut reader, st, why);
        }
    }
    let mut chained = io::Cursor::new(head).chain(&mut reader);
    let result = shared.handler.store(req, &mut chained);
    let (cursor, reader) = chained.into_inner();
    let unread_head = cursor.get_ref().len() as u64 - cursor.position();
    let rest = reader
        .drain()
        .map_err(|e| DimseError::io("receive data set", &e))?;
    match result {
        Ok(()) if unread_head + rest == 0 => {
            debug!(peer = %req.peer, calling_ae = %req.calling_ae, "C-STORE stored");
            Ok(status::SUCCESS)
        }
        Ok(()) => {
            warn!(peer = %req.peer, "store handler returned before the end of the data set");
            Ok(status::PROCESSING_FAILURE)
        }
        Err(r) => {
            warn!(peer = %req.peer, calling_ae = %req.calling_ae, status = format!("{:04X}", r.status), reason = %r.reason, "C-STORE refused by handler");
            Ok(if r.status == status::SUCCESS {
                status::PROCESSING_FAILURE
            } else {
                r.status
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::dictionary::{UidDictionary, UidType};
    use dicom_dictionary_std::StandardSopClassDictionary;

    #[test]
    fn issue_18_storage_classes_match_dictionary() {
        // every generated entry is a storage SOP class of the dictionary
        for uid in STORAGE_SOP_CLASSES {
            let e = StandardSopClassDictionary
                .by_uid(uid)
                .unwrap_or_else(|| panic!("{uid} not in the dictionary"));
            assert_eq!(e.r#type, UidType::SopClass, "{uid}");
            assert!(
                e.name.contains("Storage") && !e.name.contains("Commitment"),
                "{}",
                e.name
            );
        }
        assert!(
            STORAGE_SOP_CLASSES.len() > 150,
            "{}",
            STORAGE_SOP_CLASSES.len()
        );
        for must in [
            uids::CT_IMAGE_STORAGE,
            uids::MR_IMAGE_STORAGE,
            uids::SECONDARY_CAPTURE_IMAGE_STORAGE,
            uids::ENHANCED_CT_IMAGE_STORAGE,
            // Ultrasound Image Storage (Retired): old modalities send it
            "1.2.840.10008.5.1.4.1.1.6",
            uids::ENCAPSULATED_PDF_STORAGE,
            uids::BASIC_TEXT_SR_STORAGE,
        ] {
            assert!(STORAGE_SOP_CLASSES.contains(&must), "{must}");
        }
        assert!(!STORAGE_SOP_CLASSES.contains(&uids::STORAGE_COMMITMENT_PUSH_MODEL));
        let abs = accepted_abstract_syntaxes();
        assert_eq!(abs.len(), STORAGE_SOP_CLASSES.len() + 1);
        assert!(abs.contains(&uids::VERIFICATION));
        assert!(!abs.contains(&uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND));
    }

    #[test]
    fn issue_18_accepted_transfer_syntaxes_are_the_readable_ones() {
        let ts = accepted_transfer_syntaxes();
        for must in [
            uids::IMPLICIT_VR_LITTLE_ENDIAN,
            uids::EXPLICIT_VR_LITTLE_ENDIAN,
            // Explicit VR Big Endian (retired, still in archives)
            "1.2.840.10008.1.2.2",
            uids::JPEG_BASELINE8_BIT,
            uids::JPEG_LOSSLESS_SV1,
            uids::JPEGLS_LOSSLESS,
            uids::JPEG2000_LOSSLESS,
            uids::RLE_LOSSLESS,
        ] {
            assert!(ts.contains(&must), "{must}");
        }
        for t in &ts {
            let s = TransferSyntaxRegistry.get(t).expect("registered");
            assert!(!s.is_unsupported(), "{t}");
        }
    }

    fn cfg() -> ScpConfig {
        ScpConfig {
            allowed_calling_aes: vec!["PACS".into()],
            called_aes: vec!["VEIL".into()],
            ..ScpConfig::default()
        }
    }

    #[test]
    fn issue_18_scp_config_errors_name_the_field() {
        let h: Arc<dyn StoreHandler> = Arc::new(|_: &StoreRequest, _: &mut dyn Read| Ok(()));
        let bind = || TcpListener::bind("127.0.0.1:0").expect("bind");
        let e = |c: ScpConfig| match Scp::start(bind(), c, h.clone()) {
            Err(DimseError::Config(m)) => m,
            Ok(_) => panic!("accepted a bad config"),
            Err(other) => panic!("{other}"),
        };
        assert!(e(ScpConfig {
            called_aes: vec![],
            ..cfg()
        })
        .contains("called AE"));
        assert!(e(ScpConfig {
            called_aes: vec!["A_TITLE_LONGER_THAN_16".into()],
            ..cfg()
        })
        .contains("AE title"));
        assert!(e(ScpConfig {
            max_pdu_length: 4096,
            ..cfg()
        })
        .contains("max_pdu_length"));
        assert!(e(ScpConfig {
            max_associations: 0,
            ..cfg()
        })
        .contains("max_associations"));
        let scp = Scp::start(bind(), cfg(), h.clone()).expect("good config");
        scp.shutdown();
    }
}
