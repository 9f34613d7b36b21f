//! What a hostile peer controls on a DICOM association, before and after
//! negotiation: the upper-layer PDU parser (dicom-ul's `read_pdu`, run on
//! every byte a sender sends), the DIMSE command set decoder, and the
//! SCP's check of a C-STORE data set's head against its command. Each
//! must refuse bad input with an error, never panic or loop.
#![no_main]

use libfuzzer_sys::fuzz_target;
use veil_dimse::{check_head, CommandSet, Encoding};

fuzz_target!(|data: &[u8]| {
    // the first byte picks what the rest is, so one corpus feeds all three
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    match pick % 3 {
        0 => {
            let mut buf = rest;
            // as the SCP reads: its maximum PDU, strict and lenient
            let _ = dicom_ul::pdu::read_pdu(&mut buf, 16384, true);
            let mut buf = rest;
            let _ = dicom_ul::pdu::read_pdu(&mut buf, 1_048_576, false);
        }
        1 => {
            if let Ok(cmd) = CommandSet::decode(rest) {
                // what the SCP asks of a command it accepted
                let _ = (cmd.command_field(), cmd.message_id(), cmd.status());
                let _ = (cmd.affected_sop_class(), cmd.affected_sop_instance());
                // what Veil encodes decodes to the same fields
                let again = CommandSet::decode(&cmd.encode()).expect("re-decode");
                assert_eq!(again.command_field_raw(), cmd.command_field_raw());
                assert_eq!(again.message_id(), cmd.message_id());
            }
        }
        _ => {
            let enc = Encoding {
                explicit: pick & 0x10 != 0,
                big_endian: pick & 0x20 != 0,
            };
            let complete = pick & 0x40 != 0;
            let _ = check_head(rest, complete, enc, "1.2.840.10008.5.1.4.1.1.2", "1.2.3.4");
        }
    }
});
