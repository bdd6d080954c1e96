"""fmct.synth"""
