"""fmct.store"""
