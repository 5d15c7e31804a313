"""registry_common"""
