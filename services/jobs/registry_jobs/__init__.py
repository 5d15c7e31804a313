"""registry_jobs"""
