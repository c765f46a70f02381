//! # wirespeed-pcap
//!
//! pcap and pcapng files as a wirespeed port.
#![forbid(unsafe_code)]
