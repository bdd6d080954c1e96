"""fmct.ssl"""
