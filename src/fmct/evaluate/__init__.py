"""fmct.evaluate"""
