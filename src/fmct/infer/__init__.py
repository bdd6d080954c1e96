"""fmct.infer"""
