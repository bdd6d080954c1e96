"""fmct.models"""
