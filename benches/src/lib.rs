//! Shared helpers for the wirespeed criterion benchmarks.
