//! The SFU's header views: RTP header fields and extension remapping, RTCP compound
//! iteration and NACK expansion, on arbitrary bytes.
#![no_main]

use callsec_rtc::rtcp::{self, Packet};
use callsec_srtp::view::RtpView;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = data.to_vec();
    let len = buf.len();
    if let Ok(mut v) = RtpView::new(&mut buf) {
        let _ = (v.ssrc(), v.sequence_number(), v.payload_type(), v.timestamp());
        let _ = v.extension(1);
        v.map_extension_ids(|id| (id % 3 != 0).then_some(id % 14 + 1));
        v.set_payload_type(96);
        assert!(v.header_len() <= len);
    }
    assert_eq!(buf.len(), len);
    for (p, bytes) in rtcp::packets(data) {
        assert!(!bytes.is_empty());
        if let Packet::Nack { fci, .. } = p {
            let _ = Packet::nacked(fci).count();
        }
    }
});
