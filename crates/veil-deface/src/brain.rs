//! A brain mask Veil computes for MR and CT.
