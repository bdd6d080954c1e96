from fmct.io.ids import patient_id_from_dicom, scan_id_from_nifti, scan_id_from_series_uid


def test_ids_are_stable_pseudonyms():
    uid = "1.2.826.0.1.3680043.8.498.123"
    assert scan_id_from_series_uid(uid) == scan_id_from_series_uid(uid)
    assert scan_id_from_series_uid(uid).startswith("s-") and uid not in scan_id_from_series_uid(uid)
    assert patient_id_from_dicom("DOE^JOHN", "x") != patient_id_from_dicom("DOE^JANE", "x")
    assert "DOE" not in patient_id_from_dicom("DOE^JOHN", "x")
    # an empty PatientID does not merge unrelated scans into one patient
    assert patient_id_from_dicom("", "a") != patient_id_from_dicom(None, "b")


def test_nifti_scan_id_strips_extensions():
    assert scan_id_from_nifti("/d/case 01.nii.gz") == "case_01"
    assert scan_id_from_nifti("x.nii") == "x"
