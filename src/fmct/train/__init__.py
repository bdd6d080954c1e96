"""fmct.train"""
